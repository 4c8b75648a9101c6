"""Fixtures for the software tests (ComfyUI, nodes, packages, guard, snapshots).

Real things only: git repositories on disk reached through ``file://``, wheels built into a local
folder and installed by the real uv/pip with ``--no-index``, and an "image" Python (a venv with a
fake torch 2.13.0 and CUDA dists) under the workspace venv, like the NGC image's Python.
"""
