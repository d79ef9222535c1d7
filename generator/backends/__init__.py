"""Backends: the only modules that import torch, diffusers and open_clip (always lazily)."""
