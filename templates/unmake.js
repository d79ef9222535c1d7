// unmake.js: the grid explorer of `generate` figures with three or more varying axes.
//
// Such a figure is rendered as plain panels (one labelled grid per combination of the axes
// that are not rows or columns) plus a JSON block (generate.py: explorer_json) that gives each
// cell's value on every axis. This script turns the panels into one grid whose rows and
// columns the reader chooses, with the other axes' values picked by radio buttons; two cells
// can be picked and compared side by side. It moves the page's own cells (their image,
// lightbox link and provenance) into the explorer's grid: no image file is published twice.
// Keys, on a focused cell: arrows move, Home/End go to the row's ends, Enter or Space picks it
// for comparison, Escape closes the comparison. The view is kept in the page's address
// (`?<figure id>=rows:…,cols:…,<axis>:<value index>`), so a link can open it. Without
// JavaScript (and in the print zine) the panels stay as they are. Every text it shows is set
// as text, never parsed as HTML.
(function () {
  "use strict";

  var count = 0;  // explorers on this page, for unique radio-group names

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (name) { node.setAttribute(name, attrs[name]); });
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function explore(figure) {
    var block = figure.querySelector("script.unmake-explorer-data");
    if (!block || figure.classList.contains("unmake-exploring")) return;
    var data = JSON.parse(block.textContent);
    var axes = data.axes;
    var id = "unmake-x" + (count += 1);
    var cells = {};  // "i,j,k" (value indices in axis order) -> the page's td of that cell
    figure.querySelectorAll("td[data-unmake-cell]").forEach(function (td) {
      var at = data.cells[Number(td.getAttribute("data-unmake-cell"))];
      if (at) cells[at.join(",")] = td;
    });
    // a zine's own template that marks no cells (or not every one): keep its plain panels
    if (Object.keys(cells).length !== data.cells.length) return;
    var state = { rows: data.rows, cols: data.cols, at: axes.map(function () { return 0; }),
                  picks: [], focus: [0, 0] };
    fromAddress();

    // 1. The controls, the grid, the comparison, and a hidden place for the cells not shown
    var root = el("div", { "class": "unmake-explorer" });
    var controls = el("div", { "class": "unmake-explorer-controls", role: "group",
                               "aria-label": "Choose the grid's axes" });
    var rowSelect = el("select", { "aria-label": "rows" });
    var colSelect = el("select", { "aria-label": "columns" });
    axes.forEach(function (axis, i) {
      rowSelect.appendChild(el("option", { value: String(i) }, axis.name));
      colSelect.appendChild(el("option", { value: String(i) }, axis.name));
    });
    var rowLabel = el("label", { "class": "unmake-explorer-pick-axis" }, "rows ");
    rowLabel.appendChild(rowSelect);
    var colLabel = el("label", { "class": "unmake-explorer-pick-axis" }, "columns ");
    colLabel.appendChild(colSelect);
    var swap = el("button", { type: "button", "class": "unmake-swap",
                              title: "swap rows and columns" }, "⇄ swap");
    var others = el("div", { "class": "unmake-explorer-others" });
    controls.appendChild(rowLabel);
    controls.appendChild(swap);
    controls.appendChild(colLabel);
    controls.appendChild(others);
    var help = el("p", { "class": "unmake-explorer-help" },
                  "Arrow keys move between cells; Enter or Space picks a cell to compare " +
                  "(two at a time, across any values); Escape closes the comparison.");
    var wrap = el("div", { "class": "unmake-grid-wrap" });
    var table = el("table", { "class": "unmake-grid unmake-explorer-grid" });
    wrap.appendChild(table);
    var status = el("p", { "class": "unmake-explorer-status", "aria-live": "polite" });
    var compare = el("div", { "class": "unmake-compare", role: "region",
                              "aria-label": "comparison of two cells" });
    compare.hidden = true;
    var parked = el("div", { "class": "unmake-explorer-parked" });
    parked.hidden = true;
    [controls, help, wrap, status, compare, parked].forEach(function (n) { root.appendChild(n); });
    figure.insertBefore(root, block.nextSibling);
    figure.classList.add("unmake-exploring");

    // 2. A pick button in every cell (it moves with the cell)
    Object.keys(cells).forEach(function (key) {
      var button = el("button", { type: "button", "class": "unmake-pick", "aria-pressed": "false",
                                  tabindex: "-1", title: "pick this cell to compare" }, "compare");
      button.addEventListener("click", function () { pick(key); });
      cells[key].appendChild(button);
    });

    function labelOf(axis, value) { return axes[axis].labels[value]; }

    function describe(key) {
      return key.split(",").map(function (v, axis) { return labelOf(axis, Number(v)); })
        .join(", ");
    }

    // 3. Draw the grid for the current axes and values
    function draw() {
      rowSelect.value = String(state.rows);
      colSelect.value = String(state.cols);
      drawOthers();
      table.querySelectorAll("td[data-unmake-cell]").forEach(function (td) {
        parked.appendChild(td);
      });
      while (table.firstChild) table.removeChild(table.firstChild);
      var rows = axes[state.rows].labels, cols = axes[state.cols].labels;
      state.focus = [Math.min(state.focus[0], rows.length - 1),
                     Math.min(state.focus[1], cols.length - 1)];
      var head = el("tr");
      head.appendChild(el("th", { scope: "col", "class": "unmake-corner" },
                          axes[state.rows].name + " \\ " + axes[state.cols].name));
      cols.forEach(function (label) { head.appendChild(el("th", { scope: "col" }, label)); });
      table.appendChild(el("thead")).appendChild(head);
      var body = table.appendChild(el("tbody"));
      rows.forEach(function (rowLabelText, r) {
        var tr = body.appendChild(el("tr"));
        tr.appendChild(el("th", { scope: "row" }, rowLabelText));
        cols.forEach(function (_, c) {
          var at = state.at.slice();
          at[state.rows] = r;
          at[state.cols] = c;
          var key = at.join(",");
          var td = cells[key] || el("td", { "class": "unmake-cell unmake-missing" }, "—");
          td.unmakeKey = key;
          td.unmakePlace = [r, c];
          td.setAttribute("tabindex", r === state.focus[0] && c === state.focus[1] ? "0" : "-1");
          tr.appendChild(td);
        });
      });
      status.textContent = "Showing " + rows.length * cols.length + " of " +
        data.cells.length + " images" + fixedText() + ".";
      showPicks();
    }

    // The view in the page's address, `?<figure id>=rows:guidance,cols:seed,prompt:1` (other
    // axes by value index from 0), so that a link can open the explorer on one view; an
    // unknown or out-of-range part is ignored
    function fromAddress() {
      var view = new URLSearchParams(window.location.search).get(figure.id);
      if (!view) return;
      var names = axes.map(function (axis) { return axis.name; });
      var rows = state.rows, cols = state.cols;
      view.split(",").forEach(function (part) {
        var pair = part.split(":"), axis = names.indexOf(pair[0]);
        if (pair[0] === "rows" || pair[0] === "cols") {
          var chosen = names.indexOf(pair[1]);
          if (chosen < 0) return;
          if (pair[0] === "rows") rows = chosen; else cols = chosen;
        } else if (axis >= 0 && /^\d+$/.test(pair[1]) &&
                   Number(pair[1]) < axes[axis].labels.length) {
          state.at[axis] = Number(pair[1]);
        }
      });
      if (rows !== cols) {
        state.rows = rows;
        state.cols = cols;
      }
    }

    function toAddress() {
      var parts = ["rows:" + axes[state.rows].name, "cols:" + axes[state.cols].name];
      axes.forEach(function (axis, i) {
        if (i !== state.rows && i !== state.cols) parts.push(axis.name + ":" + state.at[i]);
      });
      var params = new URLSearchParams(window.location.search);
      params.set(figure.id, parts.join(","));
      window.history.replaceState(window.history.state, "",
                                  "?" + params.toString() + window.location.hash);
    }

    function fixedText() {
      var fixed = [];
      axes.forEach(function (axis, i) {
        if (i !== state.rows && i !== state.cols) fixed.push(labelOf(i, state.at[i]));
      });
      return fixed.length ? " (" + fixed.join(", ") + ")" : "";
    }

    function drawOthers() {
      while (others.firstChild) others.removeChild(others.firstChild);
      axes.forEach(function (axis, i) {
        if (i === state.rows || i === state.cols) return;
        var set = el("fieldset", { "class": "unmake-explorer-axis" });
        set.appendChild(el("legend", {}, axis.name));
        axis.labels.forEach(function (label, v) {
          var option = el("label");
          var radio = el("input", { type: "radio", name: id + "-" + i, value: String(v) });
          radio.checked = state.at[i] === v;
          radio.addEventListener("change", function () {
            state.at[i] = v;
            draw();
            toAddress();
          });
          option.appendChild(radio);
          option.appendChild(document.createTextNode(" " + label));
          set.appendChild(option);
        });
        others.appendChild(set);
      });
    }

    function setAxes(rows, cols) {
      state.rows = rows;
      state.cols = cols;
      draw();
      toAddress();
    }

    rowSelect.addEventListener("change", function () {
      var next = Number(rowSelect.value);
      setAxes(next, next === state.cols ? state.rows : state.cols);
    });
    colSelect.addEventListener("change", function () {
      var next = Number(colSelect.value);
      setAxes(next === state.rows ? state.cols : state.rows, next);
    });
    swap.addEventListener("click", function () {
      state.focus = [state.focus[1], state.focus[0]];
      setAxes(state.cols, state.rows);
    });

    // 4. Picking two cells and comparing them
    function pick(key) {
      var i = state.picks.indexOf(key);
      if (i >= 0) state.picks.splice(i, 1);
      else state.picks.push(key);
      if (state.picks.length > 2) state.picks.shift();
      showPicks();
    }

    function showPicks() {
      Object.keys(cells).forEach(function (key) {
        var td = cells[key], n = state.picks.indexOf(key);
        var button = td.querySelector("button.unmake-pick");
        td.classList.toggle("unmake-picked", n >= 0);
        button.setAttribute("aria-pressed", n >= 0 ? "true" : "false");
        button.textContent = n >= 0 ? "✓ " + "AB"[n] : "compare";
      });
      while (compare.firstChild) compare.removeChild(compare.firstChild);
      if (state.picks.length === 1) {
        status.textContent = "Picked A: " + describe(state.picks[0]) +
          ". Pick a second cell to compare.";
      }
      if (state.picks.length === 2) {
        status.textContent = "Comparing A (" + describe(state.picks[0]) + ") with B (" +
          describe(state.picks[1]) + "); Escape closes.";
      }
      compare.hidden = state.picks.length < 2;
      if (compare.hidden) return;
      var top = compare.appendChild(el("div", { "class": "unmake-compare-head" }));
      top.appendChild(el("strong", {}, "Compare"));
      var close = top.appendChild(el("button", { type: "button", "class": "unmake-compare-close" },
                                     "close (Esc)"));
      close.addEventListener("click", closeCompare);
      var sides = compare.appendChild(el("div", { "class": "unmake-compare-sides" }));
      var values = state.picks.map(function (key) { return key.split(","); });
      state.picks.forEach(function (key, n) {
        var side = sides.appendChild(el("figure", { "class": "unmake-compare-side",
                                                    "data-unmake-cell": cells[key]
                                                      .getAttribute("data-unmake-cell") }));
        side.appendChild(el("p", { "class": "unmake-compare-letter" }, "AB"[n]));
        var img = cells[key].querySelector("img");
        if (img) {
          // the same image file as the cell's (one download): a second element, not a copy
          side.appendChild(el("img", { src: img.getAttribute("src"), alt: img.alt,
                                       width: img.getAttribute("width"),
                                       height: img.getAttribute("height") }));
        } else {
          side.appendChild(el("p", { "class": "unmake-missing" }, "no image: " +
            cells[key].textContent.replace(/\s+/g, " ").trim()));
        }
        var list = side.appendChild(el("dl"));
        axes.forEach(function (axis, a) {
          list.appendChild(el("dt", {}, axis.name));
          var differs = values[0][a] !== values[1][a];
          var dd = list.appendChild(el("dd", differs ? { "class": "unmake-differs" } : {},
                                       (differs ? "≠ " : "") + labelOf(a, Number(values[n][a]))));
          dd.setAttribute("data-axis", axis.name);
        });
      });
    }

    function closeCompare() {
      if (!state.picks.length) return false;
      state.picks = [];
      draw();  // the grid's status line, and no cell picked
      var focused = table.querySelector("td[tabindex='0']");
      if (focused) focused.focus();
      return true;
    }

    // 5. Keys: a roving focus over the grid's cells
    table.addEventListener("keydown", function (event) {
      var td = event.target;
      if (!td.unmakePlace || td.tagName !== "TD") return;
      var r = td.unmakePlace[0], c = td.unmakePlace[1];
      var rows = axes[state.rows].labels.length, cols = axes[state.cols].labels.length;
      var moves = { ArrowUp: [r - 1, c], ArrowDown: [r + 1, c], ArrowLeft: [r, c - 1],
                    ArrowRight: [r, c + 1], Home: [r, 0], End: [r, cols - 1] };
      if (event.key === "Enter" || event.key === " ") {
        event.preventDefault();
        if (cells[td.unmakeKey]) pick(td.unmakeKey);
        return;
      }
      var to = moves[event.key];
      if (!to) return;
      event.preventDefault();
      if (to[0] < 0 || to[0] >= rows || to[1] < 0 || to[1] >= cols) return;
      td.setAttribute("tabindex", "-1");
      state.focus = to;
      var next = table.tBodies[0].rows[to[0]].cells[to[1] + 1];  // after the row's header
      next.setAttribute("tabindex", "0");
      next.focus();
    });
    root.addEventListener("keydown", function (event) {
      if (event.key === "Escape" && closeCompare()) event.preventDefault();
    });

    draw();
  }

  function start() {
    document.querySelectorAll("figure[data-unmake-explorer]").forEach(explore);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
  // Material's instant navigation swaps pages without reloading them: it announces each page
  if (window.document$ && typeof window.document$.subscribe === "function") {
    window.document$.subscribe(start);
  }
})();
