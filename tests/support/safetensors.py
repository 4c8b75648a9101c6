"""Valid safetensors files with the tensor names each model kind carries (for the organizer)."""

from __future__ import annotations

import hashlib
import json
import struct


def safetensors_bytes(tensors: dict[str, int], metadata: dict[str, str] | None = None) -> bytes:
    """A valid safetensors file: ``tensors`` maps names to element counts (F16, 1-D)."""
    header: dict[str, object] = {}
    offset = 0
    for name, count in tensors.items():
        nbytes = count * 2
        header[name] = {"dtype": "F16", "shape": [count], "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    if metadata:
        header["__metadata__"] = metadata
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    body = hashlib.shake_256(raw).digest(offset) if offset else b""
    return struct.pack("<Q", len(raw)) + raw + body


FLUX_KEYS = {
    "double_blocks.0.img_attn.qkv.weight": 40000,
    "single_blocks.0.linear1.weight": 30000,
    "img_in.weight": 1000,
}
VAE_KEYS = {"decoder.conv_in.weight": 20000, "encoder.conv_in.weight": 20000}
CLIP_KEYS = {"text_model.encoder.layers.0.mlp.fc1.weight": 25000}
T5_KEYS = {"encoder.block.0.layer.0.SelfAttention.q.weight": 60000, "shared.weight": 1000}
LORA_KEYS = {"lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight": 3000}
