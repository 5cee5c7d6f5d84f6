"""Can a Wan transformer of the tiny world's size learn to lay out a motion from the first frame? (issue 29)

    python benchmarks/transport_probe.py --heads 4 --head-dim 64 --steps 1500 --log hd64.jsonl
    python benchmarks/transport_probe.py --heads 2 --head-dim 128 --steps 1500 --log hd128.jsonl
    python benchmarks/transport_probe.py --heads 2 --head-dim 128 --position latent --steps 1000 --log lat.jsonl --sheet lat.png
    python benchmarks/vae_capacity.py --steps 800 --variant pos:vae.z_dim=36,vae.position_channels=4 --save vaes
    python benchmarks/transport_probe.py --heads 2 --head-dim 128 --position codec --vae vaes/pos --log codec.jsonl

Every world so far renders a LoRA's spin or zoom as a dissolve: from pure noise, its transformer predicts
content only where the content's source lies within about a token of it (docs/results.md, Sessions 20-22).
This probe isolates that skill from the codec, the corpus and the captions. The clips are made in latent
space: frame 0 is the shipped tiny VAE's latent of a random view of a train photo, frames 1.. are that latent
warped by one of nine *told* motions (still; turn a quarter either way; zoom in or out by 2x; slide half the
frame left, right, up or down), on its own fixed random text embedding. A randomly initialised
WanTransformer3DModel (Wan init, expand_timesteps conditioning, the world's flow-matching loss and sigma
shift) trains on fresh draws, never the same clip twice. Every `--every` steps, on views of the held-out
photos, it reports:
- `x0_rel`: the clean-clip prediction from pure noise (sigma 1, where a render starts; frames 1..), its mean
  squared error over that of copying frame 0 (1.0 = no better than a still);
- `x0_ident`: the share of (view, motion) pairs whose sigma-1 prediction is nearest its own motion's truth
  among the nine truths of the same view (chance 1/9; a still copy scores only the still);
- `euler_ident` / `euler_rel`: the same for an 8-step Euler sample (what a render does).
A transformer that learns the motions (identification near 1 with x0_rel well below 1) can be the tiny
world's base; the figure per step says how much training that takes at each shape.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from p2e_cli.world.position import position_grid

POSITION = 4  # position channels of --position input/latent/codec
MOTIONS = ("still", "turn-cw", "turn-ccw", "zoom-in", "zoom-out", "slide-left", "slide-right", "slide-up", "slide-down")


def affine(motion: str, p: torch.Tensor) -> torch.Tensor:
    """(n, 2, 3) sampling matrices (output -> input, normalised coordinates) at progress p in [0, 1]."""
    n = len(p)
    a = torch.zeros(n, 2, 3)
    angle = {"turn-cw": 1.0, "turn-ccw": -1.0}.get(motion, 0.0) * p * math.pi / 2
    scale = {"zoom-in": 0.5 ** p, "zoom-out": 2.0 ** p}.get(motion, torch.ones(n))
    shift = {"slide-left": (1, 0), "slide-right": (-1, 0), "slide-up": (0, 1), "slide-down": (0, -1)}.get(motion, (0, 0))
    a[:, 0, 0], a[:, 0, 1] = scale * torch.cos(angle), -scale * torch.sin(angle)
    a[:, 1, 0], a[:, 1, 1] = scale * torch.sin(angle), scale * torch.cos(angle)
    a[:, 0, 2], a[:, 1, 2] = shift[0] * p, shift[1] * p
    return a


def clips(first: torch.Tensor, motion: torch.Tensor, frames: int) -> torch.Tensor:
    """(n, C, h, w) first latents + motion index -> (n, C, frames, h, w), frames 1.. warped (zero = the latent mean outside)."""
    n = len(first)
    out = [first]
    for f in range(1, frames):
        p = torch.full((n,), f / (frames - 1))
        theta = torch.stack([affine(MOTIONS[m], p[i:i + 1])[0] for i, m in enumerate(motion.tolist())])
        grid = F.affine_grid(theta, list(first.shape), align_corners=False)
        out.append(F.grid_sample(first, grid, mode="bilinear", padding_mode="zeros", align_corners=False))
    return torch.stack(out, 2)


def load_vae(folder: Path | None = None):
    """An AutoencoderKLWan folder (`benchmarks/vae_capacity.py --save`), else the shipped tiny world's VAE; float32."""
    from diffusers import AutoencoderKLWan

    from p2e_cli.world.shipped import shipped_world

    return AutoencoderKLWan.from_pretrained(folder or shipped_world("tiny") / "vae").float().eval()


@torch.no_grad()
def first_latents(vae, split: str, n: int, seed: int) -> torch.Tensor:
    """n normalised latents (n, C, h, w) of random 64x64 views of a split's photos, by `vae`."""
    from types import SimpleNamespace

    from p2e_cli.encode import encode_latents
    from p2e_cli.world.corpus import photo_bank

    bank = photo_bank(split, size=128)
    g = torch.Generator().manual_seed(seed)
    views = []
    for _ in range(n):
        img = bank[int(torch.randint(len(bank), (1,), generator=g))]
        side = int(torch.randint(64, 129, (1,), generator=g))
        y, x = (int(torch.randint(129 - side, (1,), generator=g)) for _ in range(2))
        view = F.interpolate(img[None, :, y:y + side, x:x + side], size=(64, 64), mode="bilinear", antialias=True)
        views.append(view.flip(-1) if torch.rand(1, generator=g) < 0.5 else view)
    video = torch.cat(views)[:, :, None]
    pipe = SimpleNamespace(vae=vae)  # encode_latents reads only the pipeline's VAE
    return torch.cat([encode_latents(pipe, video[i:i + 32]) for i in range(0, n, 32)])[:, :, 0]


class WithPosition(torch.nn.Module):
    """`--position input`, the upper bound of absolute position: position_grid appended, clean, to every
    frame's input channels (what Wan's RoPE-only transformer never gets). `module` is the Wan transformer, which
    flow_prediction reads the patch size from."""

    def __init__(self, module: torch.nn.Module):
        super().__init__()
        self.module = module

    def forward(self, hidden_states: torch.Tensor, **kwargs):
        return self.module(hidden_states=torch.cat([hidden_states, position_grid(hidden_states)], 1), **kwargs)


def probe_clips(first: torch.Tensor, motion: torch.Tensor, frames: int, position: str,
                codec: int = POSITION) -> torch.Tensor:
    """The clips of a --position mode: `codec` keeps the codec's own position channels (its last `codec`) as frame 0 has
    them in every frame (a codec writes where a pixel is, not what moved there) and moves the rest; `latent`
    appends the exact grid to the moved latents."""
    if position == "codec":
        still = first[:, -codec:, None].expand(-1, -1, frames, -1, -1)
        return torch.cat([clips(first[:, :-codec], motion, frames), still], 1)
    moved = clips(first, motion, frames)
    return torch.cat([moved, position_grid(moved)], 1) if position == "latent" else moved


def make_model(args, channels: int) -> torch.nn.Module:
    from diffusers import WanTransformer3DModel

    from p2e_cli.world.build import wan_init

    torch.manual_seed(args.seed)
    model = WanTransformer3DModel(patch_size=tuple(args.patch), num_attention_heads=args.heads,
                                  attention_head_dim=args.head_dim,
                                  in_channels=channels + (POSITION if args.position == "input" else 0),
                                  out_channels=channels, text_dim=384,
                                  freq_dim=256, ffn_dim=args.ffn, num_layers=args.layers, cross_attn_norm=True,
                                  qk_norm="rms_norm_across_heads")
    model = wan_init(model)
    return WithPosition(model) if args.position == "input" else model


@torch.no_grad()
def evaluate(model, first: torch.Tensor, texts: torch.Tensor, frames: int, steps: int = 8,
             shift: float = 3.0, position: str = "none", codec: int = POSITION) -> tuple[dict, torch.Tensor, dict[str, torch.Tensor]]:
    """(metrics, truth clips, {"x0": ..., "euler": ...} predictions), clips ordered view-major, motion-minor; the
    metrics on the image channels (not position channels)."""
    from p2e_cli.training import flow_prediction, shifted_sigmas

    model.eval()
    n, k = len(first), len(MOTIONS)
    motion = torch.arange(k).repeat(n)
    truth = probe_clips(first.repeat_interleave(k, 0), motion, frames, position, codec)
    noise = torch.randn(truth.shape, generator=torch.Generator().manual_seed(1))
    rows = {}
    # x0 at sigma 1: x_1 = noise, x0 = x_1 - v
    v, _, _ = flow_prediction(model, truth, texts[motion], torch.ones(len(truth)), noise)
    rows["x0"] = noise - v
    # 8-step Euler on the shifted schedule, frame 0 given clean (the pipeline's expand_timesteps path)
    sig = shifted_sigmas(torch.linspace(1, 0, steps + 1), shift)
    x = noise.clone()
    for s0, s1 in zip(sig[:-1], sig[1:]):
        # flow_prediction noises (latents, noise) to (1-s) latents + s noise: passing the state as both keeps it
        cond = torch.cat([truth[:, :, :1], x[:, :, 1:]], 2)
        v, _, _ = flow_prediction(model, cond, texts[motion], torch.full((len(x),), float(s0)), cond)
        x = x + (s1 - s0) * v
    rows["euler"] = x
    for pred in rows.values():
        pred[:, :, :1] = truth[:, :, :1]  # the conditioning frame, as the pipeline keeps it
    model.train()
    whole = truth, rows  # for the sheet: the position channels too
    image = truth.shape[1] - {"latent": POSITION, "codec": codec}.get(position, 0)
    truth, rows = truth[:, :image], {name: pred[:, :image] for name, pred in rows.items()}
    out = {}
    copy = ((truth[:, :, 1:] - truth[:, :, :1]) ** 2).mean()
    truths = truth.view(n, k, *truth.shape[1:])[:, :, :, 1:]
    for name, full in rows.items():
        pred = full[:, :, 1:]
        out[f"{name}_rel"] = float(((pred - truth[:, :, 1:]) ** 2).mean() / copy)
        d = ((pred.view(n, k, 1, *pred.shape[1:]) - truths[:, None]) ** 2).mean(dim=(3, 4, 5, 6))  # (n, k, k)
        hit = (d.argmin(-1) == torch.arange(k)).float()
        out[f"{name}_ident"] = float(hit.mean())
        out[f"{name}_ident_by_motion"] = {m: round(float(h), 3) for m, h in zip(MOTIONS, hit.mean(0))}
    return out, *whole


def write_sheet(vae, truth: torch.Tensor, rows: dict[str, torch.Tensor], out: Path) -> None:
    """Truth, x0 from sigma 1 and the Euler sample of the first held-out view, every motion, decoded by `vae`."""
    from p2e_cli.encode import decode_latents
    from p2e_cli.video import contact_sheet, write_image

    clips_, labels = [], []
    for m, motion in enumerate(MOTIONS):
        for name, x in (("truth", truth), *rows.items()):
            clips_.append(decode_latents(vae, x[m:m + 1, :vae.config.z_dim]))  # latent: the exact grid off
            labels.append(f"{motion}: {name}")
    write_image(contact_sheet(clips_, labels, max_columns=17), out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--head-dim", type=int, default=64)
    p.add_argument("--ffn", type=int, default=1024)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--patch", type=int, nargs=3, default=(1, 2, 2))
    p.add_argument("--position", choices=("none", "input", "latent", "codec"), default="none",
                   help="exact position channels: appended clean to every frame's input (input, an upper bound), or "
                        "carried as 4 more latent channels, noised and predicted like the rest (latent: what a codec "
                        "that writes position into its latents would give); codec: the --vae's own last "
                        "--codec-channels (its vae.position_channels), as its encoder wrote them")
    p.add_argument("--codec-channels", type=int, default=POSITION, help="position channels of a --position codec VAE")
    p.add_argument("--vae", type=Path, help="AutoencoderKLWan folder (benchmarks/vae_capacity.py --save; default: "
                                            "the shipped tiny world's)")
    p.add_argument("--frames", type=int, default=5, help="latent frames (5 = 17 video frames at 4x)")
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--pool", type=int, default=2048, help="train views encoded once; each clip draws a view and a motion")
    p.add_argument("--every", type=int, default=250)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--log", type=Path, required=True)
    p.add_argument("--save", type=Path, help="write the trained transformer's state dict here")
    p.add_argument("--sheet", type=Path, help="PNG: truth / x0 / Euler rows of one held-out view, every motion, at the end")
    p.add_argument("--init", type=Path, help="start from a --save file of the same shape (a fresh optimizer and schedule)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from p2e_cli.training import cosine_lr, flow_matching_loss, shifted_sigmas

    vae = load_vae(args.vae)
    pool = first_latents(vae, "train", args.pool, seed=1)
    held = first_latents(vae, "heldout", 8, seed=2)
    texts = torch.randn(len(MOTIONS), 4, 384, generator=torch.Generator().manual_seed(3))
    model = make_model(args, pool.shape[1] + (POSITION if args.position == "latent" else 0))
    if args.init:
        model.load_state_dict(torch.load(args.init, weights_only=True))
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    g = torch.Generator().manual_seed(args.seed + 10)
    params = sum(p.numel() for p in model.parameters())
    log = args.log.open("w")
    start = time.time()
    smooth = None
    for step in range(args.steps + 1):
        if step % args.every == 0:
            metrics, truth, predictions = evaluate(model, held, texts, args.frames, position=args.position,
                                                   codec=args.codec_channels)
            row = {"step": step, "seconds": round(time.time() - start, 1), "loss": smooth, "params": params, **metrics}
            print(json.dumps(row), flush=True)
            log.write(json.dumps(row) + "\n")
            log.flush()
        if step == args.steps:
            if args.save:
                torch.save(model.state_dict(), args.save)
            if args.sheet:
                write_sheet(vae, truth, predictions, args.sheet)
            break
        for group in opt.param_groups:
            group["lr"] = cosine_lr(step, args.steps, args.lr, warmup=100)
        pick = torch.randint(len(pool), (args.batch,), generator=g)
        motion = torch.randint(len(MOTIONS), (args.batch,), generator=g)
        latents = probe_clips(pool[pick], motion, args.frames, args.position, args.codec_channels)
        sigmas = shifted_sigmas(torch.rand(args.batch, generator=g), 3.0)
        noise = torch.randn(latents.shape, generator=g)
        loss = flow_matching_loss(model, latents, texts[motion], sigmas, noise).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        value = float(loss.detach())
        smooth = value if smooth is None else 0.98 * smooth + 0.02 * value


if __name__ == "__main__":
    main()
