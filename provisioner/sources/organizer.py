"""Where a model file goes: pure routing into ComfyUI's ``models/<folder>/`` tree.

Precedence (first that answers wins):

1. the entry's explicit ``type`` (and ``subdir``),
2. the source's own metadata (Civitai's model type via ``civitai.folder_for_type``, a Hugging
   Face repo profile),
3. known file names (``flux1-*`` → diffusion_models, ``ae.safetensors`` → vae, ...),
4. the safetensors header's tensor names (a transformer, a VAE, a text encoder, a LoRA, ...),
5. ``checkpoints``, with a warning.

Everything here is a function of its inputs; the I/O (reading the header, linking) is elsewhere.
"""

from __future__ import annotations

import fnmatch
import posixpath
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

DEFAULT_FOLDER = "checkpoints"

#: (glob on the lower-cased file name, folder). First match wins; keep specific before general.
KNOWN_NAMES: tuple[tuple[str, str], ...] = (
    ("ae.safetensors", "vae"),
    ("ae.sft", "vae"),
    ("flux1-*vae*", "vae"),
    ("flux1-*", "diffusion_models"),
    ("flux1_*", "diffusion_models"),
    ("flux.1-*", "diffusion_models"),
    ("clip_l*", "text_encoders"),
    ("clip_g*", "text_encoders"),
    ("t5xxl*", "text_encoders"),
    ("t5-v1_1-xxl*", "text_encoders"),
    ("umt5*", "text_encoders"),
    ("llava_llama3*", "text_encoders"),
    ("sdxl_vae*", "vae"),
    ("*.vae.safetensors", "vae"),
    ("vae-ft-*", "vae"),
    ("*lora*.safetensors", "loras"),
    ("*controlnet*", "controlnet"),
    ("*esrgan*.pth", "upscale_models"),
    ("*x4plus*.pth", "upscale_models"),
    ("clip_vision*", "clip_vision"),
    ("sigclip_vision*", "clip_vision"),
)

_LORA_MARKERS = (".lora_a.", ".lora_b.", ".lora_down.", ".lora_up.", "lora_down.", "lora_up.")


@dataclass(frozen=True)
class Route:
    """The chosen folder, why it was chosen, and a warning when it is only a guess."""

    folder: str
    reason: str
    warning: str | None = None


def folder_from_name(filename: str) -> str | None:
    """The folder a well-known file name belongs in, or ``None``."""
    name = PurePosixPath(filename).name.lower()
    for pattern, folder in KNOWN_NAMES:
        if fnmatch.fnmatchcase(name, pattern):
            return folder
    return None


def folder_from_header(keys: Iterable[str]) -> str | None:
    """Classify a safetensors file by its tensor names; ``None`` when they say nothing known."""
    names = [k.lower() for k in keys]
    if not names:
        return None

    def any_prefix(*prefixes: str) -> bool:
        return any(n.startswith(prefixes) for n in names)

    if any_prefix("lora_unet_", "lora_te", "lora_transformer_") or any(
        marker in n for n in names for marker in _LORA_MARKERS
    ):
        return "loras"
    if any_prefix("model.diffusion_model.") and any_prefix("first_stage_model."):
        return "checkpoints"  # a full SD/SDXL checkpoint: UNet + VAE (+ text encoders)
    if any_prefix("control_model.", "controlnet_", "input_hint_block.") or any(
        "controlnet_cond_embedding" in n for n in names
    ):
        return "controlnet"
    if any_prefix(
        "double_blocks.",
        "single_blocks.",
        "model.diffusion_model.",
        "joint_blocks.",
        "transformer_blocks.",
        "single_transformer_blocks.",
        "input_blocks.",
        "middle_block.",
        "output_blocks.",
    ):
        return "diffusion_models"
    if any_prefix("decoder.conv_in.", "decoder.up.", "decoder.mid.", "first_stage_model.decoder."):
        return "vae"
    if any_prefix("vision_model.", "visual."):
        return "clip_vision"
    if any_prefix(
        "text_model.", "encoder.block.", "shared.", "text_encoders.", "transformer.text_model."
    ) or any(n.startswith("encoder.layer.") for n in names):
        return "text_encoders"
    return None


def route(
    filename: str,
    *,
    explicit: str | None = None,
    source_folder: str | None = None,
    header_keys: Sequence[str] | None = None,
) -> Route:
    """Choose the ComfyUI folder for ``filename`` by the precedence in this module's docstring."""
    if explicit:
        return Route(explicit, "type set in the manifest")
    if source_folder:
        return Route(source_folder, "source metadata")
    by_name = folder_from_name(filename)
    if by_name:
        return Route(by_name, "known file name")
    if header_keys is not None:
        by_header = folder_from_header(header_keys)
        if by_header:
            return Route(by_header, "safetensors header")
    return Route(
        DEFAULT_FOLDER,
        "default",
        f"cannot tell what kind of model {filename!r} is; placed in models/{DEFAULT_FOLDER}/ "
        "(set 'type' on the entry to choose the folder)",
    )


def relative_dest(folder: str, subdir: str | None, filename: str) -> str:
    """``models/<folder>[/<subdir>]/<filename>`` as a POSIX path relative to the root."""
    parts = ["models", folder, *(subdir.strip("/").split("/") if subdir else []), filename]
    return posixpath.join(*[p for p in parts if p])
