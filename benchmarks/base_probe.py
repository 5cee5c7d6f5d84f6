"""Can a world's base move content at all? Two probes of its transformer (issue 29).

    python benchmarks/base_probe.py --base tiny19 --base /path/to/base/folder ...

1. **Loss by noise level against copying the first frame.** Broad-corpus clips (fixed seed, neutral and
   changed apart), encoded by the base's VAE, flow-matching loss at fixed sigmas, beside the loss of the
   trivial predictor that copies the clean conditioning latent into every frame. At high noise the
   layout of the whole clip is decided; a base worse than the copy there has not learned to keep, let
   alone move, the picture.
2. **Does it know where a token is?** Wan's transformer has no absolute position embedding for video
   tokens: position enters only through 3D RoPE in self-attention, which depends on *relative* offsets.
   A slide is one offset everywhere, so a position-blind model can slide; turning or zooming about a
   point moves each token by an offset that depends on where it is, and a melt moves the bottom
   differently from the top. Real Wan learns absolute position implicitly (a deep VAE with zero padding,
   30-40 blocks, head dim 128 whose RoPE frequencies resolve its 30-60-token grid). The probe fits a
   least-squares linear map from token features to the token's (x, y) grid coordinate on 3/4 of the
   clips and scores R^2 on the rest: for the VAE's frame-0 latent patches (zero padding at the border
   is the only source of position) and for the noisy frames' tokens after every block. It also lists the
   spatial RoPE frequencies of the head dim, and how many resolve the token grid (turn by 1 to 2 pi
   radians across it).

R^2 near 0 after every block means no LoRA on this base can turn the picture about its centre.

3. **Does a caption that says what changes help?** For a base built with `transformer.captions: coded`, the
   changed clips' loss is also printed with their motion codes as captions (world/change.py motion_codes):
   a base that lays out a described change has a much lower loss at high noise with the code than
   without. `--x0-sheet PNG` decodes the clean-clip prediction from pure noise (sigma 1, where a render
   starts) for the changed clips with the largest turn and zoom codes, with each caption kind, under the
   truth.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

SIGMAS = (0.05, 0.2, 0.4, 0.6, 0.8, 0.95, 1.0)


def linear_r2(features: torch.Tensor, targets: torch.Tensor, n_fit: int) -> list[float]:
    """R^2 on the rows after n_fit of a least-squares affine fit on the first n_fit rows."""
    x = torch.cat([features.double(), torch.ones(len(features), 1, dtype=torch.double)], 1)
    y = targets.double()
    solution = torch.linalg.lstsq(x[:n_fit], y[:n_fit], driver="gelsd").solution
    pred, truth = x[n_fit:] @ solution, y[n_fit:]
    return (1 - ((pred - truth) ** 2).sum(0) / ((truth - truth.mean(0)) ** 2).sum(0)).tolist()


def rope_resolution(head_dim: int, tokens: int, theta: float = 10000.0) -> tuple[list[float], int]:
    """Wan's spatial RoPE frequencies (rad / token) for a head dim (WanRotaryPosEmbed: 2 * (head_dim // 6)
    dims per spatial axis), and how many turn by 1 to 2 pi radians across a grid of `tokens`."""
    dim = 2 * (head_dim // 6)
    freqs = [theta ** (-2 * j / dim) for j in range(dim // 2)]
    return freqs, sum(1 for f in freqs if 1.0 <= f * (tokens - 1) < 2 * torch.pi)


@torch.no_grad()
def probe(folder: Path, clips: int, sigma: float, seed: int, x0_sheet: Path | None = None) -> None:
    from p2e_cli.encode import encode_latents, encode_texts
    from p2e_cli.training import flow_matching_loss
    from p2e_cli.wan import base_settings, load_pipeline
    from p2e_cli.world.change import corpus_clips
    from p2e_cli.world.corpus import captions, photo_bank

    pipe = load_pipeline(folder)
    transformer = pipe.transformer.float().eval()
    settings = base_settings(folder)
    size, frames = settings["size"][0], settings["frames"]
    g = torch.Generator().manual_seed(seed)
    codes: list[str] = []
    video, changed = corpus_clips("broad", photo_bank("train", size=2 * size), clips, frames, size, g, codes)
    latents = torch.cat([encode_latents(pipe, video[i:i + 4]) for i in range(0, clips, 4)])
    generic = captions(clips, g, changed)
    text = encode_texts(pipe, generic, settings["max_sequence_length"])
    coded = encode_texts(pipe, [c or t for c, t in zip(codes, generic)], settings["max_sequence_length"])
    noise = torch.randn(latents.shape, generator=g)
    name = folder.name

    for label, rows, t_all in (("neutral", ~changed, text), ("changed", changed, text),
                               ("changed, coded captions", changed, coded)):
        x, n, t = latents[rows], noise[rows], t_all[rows]
        model = [flow_matching_loss(transformer, x, t, torch.full((len(x),), s), n).mean().item() for s in SIGMAS]
        # copying the clean first latent frame: x0_hat = x[:, :, :1], so v_hat - v = (x - x0_hat) / sigma
        copy = [((x[:, :, 1:] - x[:, :, :1]) ** 2).mean().item() / s ** 2 for s in SIGMAS]
        cells = "  ".join(f"{s}: {m:.3f} ({c:.2f})" for s, m, c in zip(SIGMAS, model, copy))
        print(f"{name}: {label} clips ({int(rows.sum())}), loss by sigma (copy-frame-0 predictor):  {cells}")

    if x0_sheet is not None:
        picks = [next((i for i, c in enumerate(codes) if set(c.split()) & set(words)), None)
                 for words in (("basalt", "flint"), ("garnet", "marble"))]
        write_x0_sheet(pipe, transformer, [i for i in picks if i is not None], latents, noise, {"generic": text, "coded": coded},
                       [codes[i] for i in picks if i is not None], x0_sheet)

    b, c, f, h, w = latents.shape
    _, ph, pw = transformer.config.patch_size
    gh, gw = h // ph, w // pw
    ys, xs = torch.meshgrid(torch.arange(gh).float(), torch.arange(gw).float(), indexing="ij")
    coords = torch.stack([xs.flatten(), ys.flatten()], 1)
    n_fit = clips * 3 // 4
    first = latents[:, :, 0].reshape(b, c, gh, ph, gw, pw).permute(0, 2, 4, 1, 3, 5).reshape(b * gh * gw, -1)
    r2 = linear_r2(first, coords.repeat(b, 1), n_fit * gh * gw)
    print(f"{name}: position R^2 (x, y) of the VAE's frame-0 latent patches: {r2[0]:.3f}, {r2[1]:.3f}")
    states = []
    hooks = [block.register_forward_hook(lambda m, i, o: states.append(o)) for block in transformer.blocks]
    flow_matching_loss(transformer, latents, text, torch.full((b,), sigma), noise)
    for hook in hooks:
        hook.remove()
    for k, state in enumerate(states):
        tokens = state.view(b, f, gh * gw, -1)[:, 1:].reshape(-1, state.shape[-1])
        r2 = linear_r2(tokens, coords.repeat(b * (f - 1), 1), n_fit * (f - 1) * gh * gw)
        print(f"{name}: position R^2 (x, y) of the noisy frames' tokens after block {k} (sigma {sigma}): "
              f"{r2[0]:.3f}, {r2[1]:.3f}")
    cfg = transformer.config
    freqs, useful = rope_resolution(cfg.attention_head_dim, max(gh, gw))
    print(f"{name}: {cfg.num_attention_heads} heads x {cfg.attention_head_dim} on a {gh}x{gw} token grid: spatial RoPE "
          f"frequencies {', '.join(f'{x:.3g}' for x in freqs)} rad/token; {useful} resolve the grid")


def write_x0_sheet(pipe, transformer, picks, latents, noise, texts, codes, out: Path) -> None:
    """Per picked clip: the truth, then the x0 prediction from sigma 1 with each caption kind (decoded)."""
    from functools import partial

    from p2e_cli.encode import decode_latents
    from p2e_cli.training import flow_prediction
    from p2e_cli.video import contact_sheet, write_image

    decode = partial(decode_latents, pipe.vae)

    rows, labels = [], []
    for i, code in zip(picks, codes):
        x = latents[i:i + 1]
        rows.append(decode(x))
        labels.append(f"truth ({code})")
        for kind, text in texts.items():
            pred, target, first = flow_prediction(transformer, x, text[i:i + 1], torch.tensor([1.0]), noise[i:i + 1])
            x0 = x + (target - pred)
            x0[:, :, :first] = x[:, :, :first]
            rows.append(decode(x0))
            labels.append(f"x0 from sigma 1, {kind} caption")
    write_image(contact_sheet(rows, labels, max_columns=17), out)


def main() -> None:
    from p2e_cli.catalog import resolve_base
    from p2e_cli.wan import base_path

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", action="append", default=[], help="registered base or a base folder (repeatable)")
    parser.add_argument("--clips", type=int, default=64, help="broad-corpus clips (the probes fit on 3/4 of them)")
    parser.add_argument("--sigma", type=float, default=0.9, help="noise level of the position probe")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--x0-sheet", type=Path, default=None,
                        help="PNG: x0 from pure noise for a turning and a zooming clip (one base)")
    args = parser.parse_args()
    for base in args.base or ["tiny"]:
        folder = Path(base) if Path(base).is_dir() else base_path(resolve_base(base))
        probe(folder, args.clips, args.sigma, args.seed, args.x0_sheet)


if __name__ == "__main__":
    main()
