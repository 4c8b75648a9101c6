"""Software on the pod: ComfyUI and custom nodes through git, the workspace venv, the torch
guard, ComfyUI-Manager snapshots, and the one way to run a child process."""
