"""Phoenix: a declarative, verified provisioner for ComfyUI + FLUX on RunPod GPUs."""

__version__ = "0.1.0"
