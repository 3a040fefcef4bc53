"""A ~120 KB CLIP projector (mmproj) that llama.cpp's mtmd loads beside the tiny chat model."""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np

from hivetray.devtools.tinymodels.common import (
    IMAGE_SIZE,
    PATCH_SIZE,
    PROJ_HIDDEN,
    V_EMBD,
    V_FF,
    V_HEAD,
    V_LAYER,
    StrPath,
    finish,
    normal,
    ones,
    zeros,
)


def write_mmproj(path: StrPath, *, n_embd_text: int = 64, seed: int = 0) -> Path:
    """Write a ~120 KB LLaVA-style CLIP projector for ``MTMDChatHandler``.

    Why: vision chat tests need a real mtmd pipeline (image decode, encode, projection).
    ``n_embd_text`` must equal the text model's n_embd (64 for the fixtures here).
    """
    out = Path(path)
    rng = np.random.default_rng(seed)
    n_patches = (IMAGE_SIZE // PATCH_SIZE) ** 2

    w = gguf.GGUFWriter(str(out), "clip")
    w.add_name("hivetray-tiny-mmproj")
    w.add_file_type(0)
    w.add_bool("clip.has_vision_encoder", True)
    w.add_string("clip.projector_type", "mlp")
    w.add_bool("clip.use_gelu", True)
    w.add_uint32("clip.vision.embedding_length", V_EMBD)
    w.add_uint32("clip.vision.feed_forward_length", V_FF)
    w.add_uint32("clip.vision.block_count", V_LAYER)
    w.add_uint32("clip.vision.attention.head_count", V_HEAD)
    w.add_float32("clip.vision.attention.layer_norm_epsilon", 1e-6)
    w.add_uint32("clip.vision.projection_dim", n_embd_text)
    w.add_uint32("clip.vision.image_size", IMAGE_SIZE)
    w.add_uint32("clip.vision.patch_size", PATCH_SIZE)
    w.add_array("clip.vision.image_mean", [0.5, 0.5, 0.5])
    w.add_array("clip.vision.image_std", [0.5, 0.5, 0.5])

    w.add_tensor("v.patch_embd.weight", normal(rng, (V_EMBD, 3, PATCH_SIZE, PATCH_SIZE), 0.05))
    w.add_tensor("v.patch_embd.bias", zeros(V_EMBD))
    w.add_tensor("v.position_embd.weight", normal(rng, (n_patches, V_EMBD), 0.05))
    w.add_tensor("v.pre_ln.weight", ones(V_EMBD))
    w.add_tensor("v.pre_ln.bias", zeros(V_EMBD))
    for i in range(V_LAYER):
        blk = f"v.blk.{i}"
        for norm in ("ln1", "ln2"):
            w.add_tensor(f"{blk}.{norm}.weight", ones(V_EMBD))
            w.add_tensor(f"{blk}.{norm}.bias", zeros(V_EMBD))
        for proj in ("attn_q", "attn_k", "attn_v", "attn_out"):
            w.add_tensor(f"{blk}.{proj}.weight", normal(rng, (V_EMBD, V_EMBD), 0.1))
            w.add_tensor(f"{blk}.{proj}.bias", zeros(V_EMBD))
        w.add_tensor(f"{blk}.ffn_up.weight", normal(rng, (V_FF, V_EMBD), 0.1))
        w.add_tensor(f"{blk}.ffn_up.bias", zeros(V_FF))
        w.add_tensor(f"{blk}.ffn_down.weight", normal(rng, (V_EMBD, V_FF), 0.1))
        w.add_tensor(f"{blk}.ffn_down.bias", zeros(V_EMBD))

    w.add_tensor("mm.0.weight", normal(rng, (PROJ_HIDDEN, V_EMBD), 0.1))
    w.add_tensor("mm.0.bias", zeros(PROJ_HIDDEN))
    # Image embeddings keep the text model's constant bias feature in dimension 0.
    mm2 = normal(rng, (n_embd_text, PROJ_HIDDEN), 0.02)
    mm2[0, :] = 0.0
    mm2_bias = zeros(n_embd_text)
    mm2_bias[0] = 1.0
    w.add_tensor("mm.2.weight", mm2)
    w.add_tensor("mm.2.bias", mm2_bias)
    return finish(w, out)
