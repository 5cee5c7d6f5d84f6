"""The named effects, as data: family, exact parameters, jitter ranges, prompts and split.

Each effect has training paraphrases (`prompts`, at least five) and held-out paraphrases
(`heldout_prompts`) that no trainer may see, so prompt generalisation can be measured on trained
effects too. The held-out *effects* (`split="heldout"`) test two kinds of generalisation:

- `holdout="value"`: a parameter value or direction between trained ones (a hue between two
  trained hues, a speed between trained speeds, a diagonal between trained directions, a new axis),
  never inside any trained effect's jitter range (a test checks this);
- `holdout="composition"`: two trained effects at once (e.g. spin while fading to black), a pairing
  no trained effect makes, although a few other compositions are trained so the idea is learnable.

A composition's family is "a+b" and its params are {a: params_a, b: params_b}, applied in order.
`jitter` maps a parameter (dotted "family.param" inside compositions) to a (low, high) range that
`curate synth` samples within the effect's identity; integer bounds sample integers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Range = tuple[float, float]
SEEDS: Range = (0, 99_999)


@dataclass(frozen=True)
class Effect:
    name: str
    family: str  # a family in ops.FAMILIES, or "a+b" for a composition
    params: dict[str, Any]
    prompts: tuple[str, ...]  # training paraphrases
    heldout_prompts: tuple[str, ...]  # paraphrases never trained on
    split: str = "train"  # "train" | "heldout"
    jitter: dict[str, Range] = field(default_factory=dict)
    holdout: str | None = None  # why it is held out: "value" | "composition"

    @property
    def families(self) -> tuple[str, ...]:
        return tuple(self.family.split("+"))

    @property
    def group(self) -> str:
        """"composition" (two families at once), "geometric" (moves content) or "photometric"."""
        from .ops import GEOMETRIC

        if len(self.families) > 1:
            return "composition"
        return "geometric" if self.family in GEOMETRIC else "photometric"

    @property
    def caption(self) -> str:
        """The canonical prompt (the first training paraphrase)."""
        return self.prompts[0]

    def prompts_for(self, split: str) -> tuple[str, ...]:
        """Paraphrases a trainer may use ("train") or must not ("heldout")."""
        return self.prompts if split == "train" else self.heldout_prompts

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "family": self.family, "split": self.split, "holdout": self.holdout,
                "params": self.params, "jitter": {k: list(v) for k, v in self.jitter.items()},
                "prompts": list(self.prompts), "heldout_prompts": list(self.heldout_prompts)}


def _effect(name: str, family: str, params: dict[str, Any], prompts: list[str], jitter: dict[str, Range] | None = None,
            split: str = "train", holdout: str | None = None) -> Effect:
    """The last two prompts are the held-out paraphrases."""
    return Effect(name, family, params, tuple(prompts[:-2]), tuple(prompts[-2:]), split, jitter or {}, holdout)


def _value(name: str, family: str, params: dict[str, Any], prompts: list[str], jitter: dict[str, Range] | None = None) -> Effect:
    return _effect(name, family, params, prompts, jitter, split="heldout", holdout="value")


_SPIN = {
    # name: (turns, jitter, direction words, speed words)
    "spin-cw": (-1.0, (-1.15, -0.85), "clockwise", ""),
    "spin-ccw": (1.0, (0.85, 1.15), "counterclockwise", ""),
    "spin-cw-fast": (-1.75, (-1.95, -1.55), "clockwise", "fast"),
    "spin-ccw-fast": (1.75, (1.55, 1.95), "counterclockwise", "fast"),
    "spin-cw-slow": (-0.25, (-0.3, -0.2), "clockwise", "slow"),
}


def _spin_prompts(direction: str, speed: str) -> list[str]:
    adverb = {"": "", "fast": " rapidly", "slow": " slowly", "half": " halfway round"}[speed]
    adjective = {"": "", "fast": "fast ", "slow": "slow ", "half": "half-turn "}[speed]
    other = "anticlockwise" if direction == "counterclockwise" else "in the direction of a clock's hands"
    return [f"the image spins {direction}{adverb}", f"{adjective}{direction} rotation of the whole picture",
            f"the picture rotates{adverb} {direction} around its centre", f"spinning {direction}{adverb}",
            f"everything turns {direction}{adverb} like a wheel",
            f"the frame twirls {other}{adverb}", f"a {adjective}spin, turning {direction}"]


_HUES = {"red": 0, "yellow": 60, "green": 120, "cyan": 180, "blue": 240, "magenta": 300}
_HELDOUT_HUES = {"orange": 30, "purple": 270}


def _hue_prompts(colour: str) -> list[str]:
    article = "an" if colour[0] in "aeiou" else "a"
    return [f"everything turns {colour}", f"the colours shift to {colour}", f"the scene is washed in {colour}",
            f"{article} {colour} tint spreads over the image", f"hue shift to {colour}",
            f"the whole picture becomes {colour}-toned", f"recoloured entirely in shades of {colour}"]


_SLIDES = {
    "slide-left": (-0.5, 0.0, "left"), "slide-right": (0.5, 0.0, "right"),
    "slide-up": (0.0, -0.5, "up"), "slide-down": (0.0, 0.5, "down"),
}


def _slide_prompts(direction: str) -> list[str]:
    return [f"the image slides {direction}", f"the picture scrolls {direction} and wraps around",
            f"everything glides {direction} across the frame", f"a looping pan, the scene moving {direction}",
            f"the view shifts steadily {direction}", f"the content drifts {direction}, reappearing on the other side",
            f"scrolling {direction} like a conveyor belt"]


def _slide_jitter(dx: float, dy: float) -> dict[str, Range]:
    return {k: (v * 0.8, v * 1.2) if v > 0 else (v * 1.2, v * 0.8) if v < 0 else (-0.03, 0.03)
            for k, v in (("dx", dx), ("dy", dy))}


_BASE: list[Effect] = [
    # -- shape ----------------------------------------------------------------------------------
    _effect("melt", "melt", dict(amount=0.8, wobble=0.5, ripples=1.0, direction=1, seed=0), [
        "melting into liquid", "the subject melts and drips down", "everything melts like wax in the heat",
        "the image liquefies and slides downward", "a slow meltdown, colours oozing toward the bottom",
        "it dissolves into a dripping puddle", "the picture sags and runs like melting ice cream",
    ], dict(amount=(0.7, 0.9), wobble=(0.4, 0.6), seed=SEEDS)),
    _effect("drip", "melt", dict(amount=0.9, wobble=1.0, ripples=4.0, direction=1, seed=0), [
        "paint drips down the picture", "thin streams drip from the image", "wet paint running down in streaks",
        "the colours drip in long runs", "dripping streaks pull the scene downward",
        "like fresh paint dribbling down a wall", "the image bleeds downward in narrow drips",
    ], dict(amount=(0.8, 1.0), wobble=(0.85, 1.0), ripples=(3.5, 4.5), seed=SEEDS)),
    _effect("evaporate", "melt", dict(amount=0.8, wobble=0.5, ripples=1.5, direction=-1, seed=0), [
        "the image evaporates upward", "everything rises away like steam", "the scene melts upward into the sky",
        "vaporising and drifting up", "the picture streams upward like smoke",
        "it boils off into vapour, rising", "the subject lifts away in wisps toward the top",
    ], dict(amount=(0.7, 0.9), wobble=(0.4, 0.6), seed=SEEDS)),
    _effect("inflate", "bulge", dict(amount=0.6, radius=1.1), [
        "inflating like a balloon", "the centre puffs up and bulges out", "the subject swells up",
        "blowing up like a balloon", "a fisheye bulge growing in the middle",
        "it balloons outward", "the middle of the picture expands as if pumped with air",
    ], dict(amount=(0.5, 0.7), radius=(1.0, 1.2))),
    _effect("deflate", "bulge", dict(amount=-1.2, radius=1.1), [
        "deflating like a balloon", "the centre shrivels and pinches inward", "the subject shrinks in on itself",
        "pinching toward the middle", "it collapses inward as the air leaks out",
        "a pinch sucks the centre inward", "the middle caves in and puckers",
    ], dict(amount=(-1.4, -1.0), radius=(1.0, 1.2))),
    _effect("squish", "squash", dict(sy=0.35, sx=1.4, anchor="bottom"), [
        "squished flat", "the subject gets squashed down and spreads out", "crushed under a heavy weight",
        "flattening like a pancake", "pressed down to the floor",
        "it squashes down, wide and short", "compressed from above until it is flat",
    ], dict(sy=(0.3, 0.4), sx=(1.3, 1.5))),
    _effect("stretch", "squash", dict(sy=1.8, sx=0.7, anchor="bottom"), [
        "stretching up tall and thin", "the subject is pulled upward", "elongating vertically",
        "growing tall like taffy being pulled", "it stretches toward the sky",
        "drawn out into a tall thin shape", "the picture extends upward, narrowing",
    ], dict(sy=(1.6, 2.0), sx=(0.65, 0.75))),
    _effect("squeeze", "squash", dict(sy=1.0, sx=0.3, anchor="center"), [
        "squeezed from both sides", "the image gets squeezed thin", "compressed horizontally into a narrow strip",
        "pressed together from the left and right", "it narrows to a sliver",
        "pinched in from the sides until it is thin", "walls close in and squeeze the picture",
    ], dict(sy=(0.95, 1.05), sx=(0.25, 0.35))),
    _effect("jelly", "jelly", dict(amount=0.3, wobbles=3.0), [
        "wobbling like jelly", "the subject jiggles like gelatin", "a bouncy, wobbly jelly motion",
        "squashing and stretching back and forth", "it wobbles like a pudding",
        "jiggly and elastic, bouncing in place", "springy wobble, tall then wide",
    ], dict(amount=(0.25, 0.35), wobbles=(2.5, 3.5))),
    _effect("pulse", "pulse", dict(amount=0.25, beats=3.0), [
        "pulsing like a heartbeat", "the image throbs in and out", "beating like a heart",
        "rhythmic pulses of zoom and light", "it pulsates to a beat",
        "throbbing bigger and brighter, then back", "a heartbeat pulse through the picture",
    ], dict(amount=(0.2, 0.3), beats=(2.5, 3.5))),
    # -- camera motion ------------------------------------------------------------------------------
    *[_effect(name, "spin", dict(turns=turns), _spin_prompts(direction, speed), dict(turns=jitter))
      for name, (turns, jitter, direction, speed) in _SPIN.items()],
    _effect("zoom-in", "zoom", dict(factor=2.0), [
        "zooming in", "the camera pushes in toward the centre", "a slow zoom into the middle",
        "moving closer to the subject", "the view magnifies the centre",
        "closing in on the middle of the frame", "dolly in, the centre filling the frame",
    ], dict(factor=(1.75, 2.3))),
    _effect("crash-zoom", "zoom", dict(factor=6.0), [
        "a crash zoom into the centre", "rapid zoom in", "the camera rushes in extremely fast",
        "a dramatic fast zoom toward the middle", "zooming in hard",
        "slamming in to an extreme close-up", "a sudden, violent push in",
    ], dict(factor=(5.0, 7.0))),
    _effect("zoom-out", "zoom", dict(factor=0.4), [
        "zooming out", "the camera pulls back", "the image shrinks into the distance",
        "pulling away from the scene", "the picture recedes into darkness",
        "the view backs away, the frame getting smaller", "dolly out, the picture growing small",
    ], dict(factor=(0.35, 0.45))),
    *[_effect(name, "slide", dict(dx=dx, dy=dy), _slide_prompts(word), _slide_jitter(dx, dy))
      for name, (dx, dy, word) in _SLIDES.items()],
    _effect("drop", "drop", dict(distance=1.1), [
        "falling out of the frame", "the picture drops down and away", "the image falls under gravity",
        "everything plummets out of view", "dropping off the bottom of the screen",
        "it tumbles down out of sight", "the scene falls away, accelerating downward",
    ], dict(distance=(1.0, 1.2))),
    _effect("shake", "shake", dict(amplitude=0.08, seed=0), [
        "camera shake", "the picture shakes violently", "an earthquake rattles the scene",
        "jittery handheld shaking", "everything trembles and jolts",
        "the frame vibrates as if struck", "the view judders, shaking harder and harder",
    ], dict(amplitude=(0.06, 0.1), seed=SEEDS)),
    _effect("flip-horizontal", "flip", dict(axis="x"), [
        "flipping over horizontally", "the picture turns over like a card", "a horizontal flip to the mirror image",
        "the image rotates around its vertical axis", "flipped left to right",
        "it turns like a page to show its mirror side", "the card flips sideways",
    ]),
    _effect("flip-vertical", "flip", dict(axis="y"), [
        "flipping upside down", "the picture flips over vertically", "turned over top to bottom",
        "the image rotates around its horizontal axis", "a vertical flip to upside down",
        "it somersaults to hang upside down", "the card tips over, head over heels",
    ]),
    # -- distortion -----------------------------------------------------------------------------------
    _effect("ripple", "ripple", dict(amplitude=0.12, rings=3.0), [
        "rippling like water", "ripples spread out from the centre", "a stone dropped in a pond",
        "concentric waves distort the picture", "the image ripples outward",
        "circular water rings wobble the scene", "like a reflection in a disturbed pool",
    ], dict(amplitude=(0.1, 0.14), rings=(2.5, 3.5))),
    _effect("wave", "wave", dict(axis="x", amplitude=0.08, waves=2.0, cycles=2.0), [
        "waving like a flag", "the image undulates sideways", "wavy distortion rolling through the picture",
        "rippling like fabric in the wind", "the scene sways in waves",
        "a flag-like wave passes through it", "horizontal wobble moving down the frame",
    ], dict(amplitude=(0.07, 0.09), waves=(1.7, 2.3), cycles=(1.5, 2.5))),
    _effect("swirl-ccw", "swirl", dict(strength=0.6, suck=0.0), [
        "swirling counterclockwise", "a whirlpool twists the centre anticlockwise",
        "the middle twirls into a spiral, turning counterclockwise", "twisting into a counterclockwise swirl",
        "stirred like paint, swirling left", "the picture winds up into a spiral",
        "a twirl in the middle, going anticlockwise",
    ], dict(strength=(0.5, 0.7))),
    _effect("swirl-cw", "swirl", dict(strength=-0.6, suck=0.0), [
        "swirling clockwise", "a whirlpool twists the centre clockwise", "the middle twirls into a clockwise spiral",
        "twisting into a swirl, turning clockwise", "stirred like paint, swirling right",
        "a clockwise vortex twists the image", "the centre winds round like a clock spring",
    ], dict(strength=(-0.7, -0.5))),
    _effect("vortex", "swirl", dict(strength=1.0, suck=3.0), [
        "sucked into a vortex", "spiralling down a drain", "the scene is pulled into a black hole",
        "a whirlpool swallows everything", "spinning inward and vanishing into the centre",
        "everything spirals into a wormhole", "drained away in a swirling funnel",
    ], dict(strength=(0.85, 1.15), suck=(2.5, 3.5))),
    _effect("kaleidoscope", "kaleidoscope", dict(wedges=6), [
        "a kaleidoscope pattern", "the image folds into mirrored symmetric wedges",
        "turning into a kaleidoscope", "mirror symmetry blooms from the centre",
        "a psychedelic kaleidoscopic mandala", "reflected into a rotating star of mirrors",
        "looking through a kaleidoscope tube",
    ], dict(wedges=(5, 8))),
    # -- break apart ----------------------------------------------------------------------------------
    _effect("shatter", "shatter", dict(tiles=6, seed=0), [
        "shattering like glass", "the image cracks into pieces that fall away", "breaking into shards",
        "smashed to pieces", "the picture fractures and crumbles down",
        "cracks spread, then the fragments drop", "it breaks like a mirror, pieces falling",
    ], dict(tiles=(5, 7), seed=SEEDS)),
    _effect("explode", "explode", dict(tiles=8, speed=0.7, seed=0), [
        "exploding outward", "the image blows apart in a burst", "a blast sends pieces flying",
        "bursting into fragments", "the scene detonates from the centre",
        "kaboom, everything flies outward", "an explosion scatters the picture",
    ], dict(tiles=(7, 10), speed=(0.6, 0.8), seed=SEEDS)),
    _effect("disintegrate", "disintegrate", dict(seed=0), [
        "disintegrating into dust", "crumbling to ash that blows away", "turning to sand and scattering",
        "the subject dissolves into particles", "fading away into drifting specks",
        "blown away like dust in the wind", "it turns to powder and drifts off",
    ], dict(seed=SEEDS)),
    _effect("tv-off", "tv_off", dict(), [
        "an old TV switching off", "collapsing into a white line then a dot", "CRT power off",
        "the screen shuts off like a vintage television", "the picture squeezes to a line and blinks out",
        "a retro television turning off", "it shrinks to a glowing dot and goes dark",
    ]),
    _effect("dissolve", "dissolve", dict(seed=0), [
        "dissolving into noise", "the picture breaks up into static", "pixels turn to random noise",
        "the image decays into coloured static", "fading into TV snow pixel by pixel",
        "scrambled into noise", "every pixel flickers out into static",
    ], dict(seed=SEEDS)),
    _effect("glitch", "glitch", dict(intensity=1.0, seed=0), [
        "digital glitch", "the image glitches and tears", "datamosh corruption",
        "a corrupted video signal", "glitchy, with rows torn sideways",
        "broken pixels and split colour channels", "the file corrupts, bands jumping sideways",
    ], dict(intensity=(0.8, 1.2), seed=SEEDS)),
    # -- colour ------------------------------------------------------------------------------------------
    *[_effect(f"hue-{colour}", "hue", dict(hue=degrees), _hue_prompts(colour), dict(hue=(degrees - 12, degrees + 12)))
      for colour, degrees in _HUES.items()],
    _effect("rainbow", "rainbow", dict(cycles=1.0), [
        "cycling through rainbow colours", "psychedelic colour cycling", "the hues rotate through the spectrum",
        "colours shift through every shade of the rainbow", "a trippy hue rotation",
        "all the colours spin round the colour wheel", "a rainbow colour shift",
    ], dict(cycles=(0.8, 1.2))),
    _effect("desaturate", "tone", dict(look="grey"), [
        "fading to black and white", "the colour drains away", "turning greyscale",
        "desaturating to monochrome", "colours fade to grey",
        "losing all its colour", "becoming a black-and-white photo",
    ]),
    _effect("sepia", "tone", dict(look="sepia"), [
        "turning into an old sepia photograph", "a vintage brownish tint", "aging into a sepia print",
        "the image yellows like an old photo", "an antique brown-toned look",
        "like a faded photograph from a century ago", "warm old-fashioned sepia tones",
    ]),
    _effect("vivid", "tone", dict(look="vivid"), [
        "colours become vivid and saturated", "boosting the saturation", "the colours pop",
        "hyper-saturated, punchy colours", "intensely vibrant colours",
        "the picture becomes garishly colourful", "everything gets more colourful and contrasty",
    ]),
    _effect("fade-black", "fade", dict(level=0.0), [
        "fading to black", "the image fades out to darkness", "the lights go out",
        "slowly darkening to black", "a fade-out to a black screen",
        "dimming until nothing is visible", "the scene sinks into darkness",
    ], dict(level=(0.0, 0.06))),
    _effect("fade-white", "fade", dict(level=1.0), [
        "fading to white", "the image washes out to white", "a fade to a white screen",
        "dissolving into white light", "everything turns white",
        "bleached away to blank white", "a whiteout swallows the scene",
    ], dict(level=(0.94, 1.0))),
    _effect("glow", "glow", dict(exposure=1.4), [
        "glowing brighter and brighter", "overexposed bloom", "the highlights glow and bloom",
        "radiating light", "the picture becomes dazzlingly bright",
        "a dreamy glow washes over it", "blooming with light until it is blown out",
    ], dict(exposure=(1.2, 1.6))),
    _effect("invert", "invert", dict(), [
        "inverting the colours", "turning into a photographic negative", "colours flip to their opposites",
        "a negative image spreads from the centre", "the colours invert",
        "like looking at a film negative", "light becomes dark and dark becomes light",
    ]),
    _effect("solarize", "solarize", dict(), [
        "solarizing", "the bright tones flip into negative", "a Sabattier solarisation effect",
        "the highlights invert while the shadows stay", "a surreal solarized look",
        "partly negative, the light areas reversed", "the whites turn dark, like solarised film",
    ]),
    _effect("thermal", "colour_map", dict(map="thermal"), [
        "thermal camera view", "turning into a heat map", "infrared thermal imaging",
        "false colour heat vision", "seen through a thermal scope",
        "a predator-style heat signature view", "hot areas glow yellow, cold ones purple",
    ]),
    _effect("night-vision", "colour_map", dict(map="night", seed=0), [
        "night vision goggles", "a green night-vision view", "seen through night vision",
        "grainy green military night vision", "switching to night-vision mode",
        "a glowing green low-light scope", "like a night-vision camera",
    ], dict(seed=SEEDS)),
    _effect("x-ray", "colour_map", dict(map="xray"), [
        "an x-ray view", "turning into an x-ray image", "seen under x-rays",
        "a blue-grey radiograph", "x-ray vision",
        "like a hospital x-ray scan", "the picture becomes a radiograph",
    ]),
    # -- texture and style ---------------------------------------------------------------------------
    _effect("blur-out", "blur", dict(sigma=0.08), [
        "blurring out of focus", "the image goes blurry", "losing focus",
        "everything becomes soft and blurred", "a defocus blur",
        "the lens drifts out of focus", "fuzzy and smeared until nothing is sharp",
    ], dict(sigma=(0.065, 0.095))),
    _effect("motion-blur", "motion_blur", dict(axis="x", length=0.5), [
        "horizontal motion blur", "streaking sideways with speed", "a speed blur from left to right",
        "smeared horizontally as if moving fast", "whooshing sideways in a blur",
        "panning so fast it streaks", "sideways speed lines smear the image",
    ], dict(length=(0.42, 0.58))),
    _effect("pixelate", "pixelate", dict(block=0.2), [
        "pixelating", "breaking up into big pixels", "turning into low-resolution blocks",
        "a mosaic of squares", "becoming 8-bit and blocky",
        "censor-style pixelation", "resolution drops to chunky pixels",
    ], dict(block=(0.16, 0.24))),
    _effect("posterize", "posterize", dict(levels=3), [
        "posterizing", "reducing to a few flat colours", "banded colours like a poster print",
        "colour quantisation", "the tones collapse into bands",
        "a screen-printed look with few colours", "harsh colour banding",
    ], dict(levels=(3, 4))),
    _effect("cartoonify", "cartoon", dict(levels=5), [
        "turning into a cartoon", "a comic-book style with bold outlines", "cel-shaded cartoon look",
        "becoming an animated drawing", "a flat-colour cartoon with ink lines",
        "like a frame from a comic", "cartoonified with thick black edges",
    ], dict(levels=(4, 6))),
    _effect("sketch", "sketch", dict(), [
        "turning into a pencil sketch", "a hand-drawn pencil drawing", "becoming a graphite sketch on paper",
        "drawn in pencil", "a charcoal sketch look",
        "like an artist's sketchbook drawing", "rendered as grey pencil lines on white",
    ]),
    _effect("neon", "neon", dict(hue=None), [
        "glowing neon edges", "outlines light up like neon tubes", "a neon wireframe on black",
        "edges glow in rainbow neon", "turning into a neon sign",
        "bright neon contours in the dark", "synthwave neon outlines",
    ]),
    # -- elements -------------------------------------------------------------------------------------
    _effect("burn", "burn", dict(seed=0), [
        "burning up", "catching fire from the edges", "the picture burns away with glowing embers",
        "scorched and charred inward", "paper burning from the edges",
        "flames eat the photo from its borders", "it chars and burns to black",
    ], dict(seed=SEEDS)),
    _effect("freeze", "freeze", dict(seed=0), [
        "freezing over", "frost creeps across the image", "turning to ice",
        "ice crystals spread from the edges", "frozen solid with an icy blue tint",
        "covered in frost", "it ices over and turns cold blue",
    ], dict(seed=SEEDS)),
    _effect("rain", "rain", dict(drops=60, seed=0), [
        "rain starts falling", "a rainstorm sets in", "streaks of rain pour down",
        "a gloomy downpour", "raindrops falling over the scene",
        "a heavy shower darkens everything", "it begins to rain hard",
    ], dict(drops=(45, 75), seed=SEEDS)),
    _effect("snow", "snow", dict(flakes=80, seed=0), [
        "snow starts falling", "snowflakes drift down", "a winter snowfall",
        "gentle snow falls over the scene", "it begins to snow",
        "flakes of snow float down", "a snowy winter flurry",
    ], dict(flakes=(60, 100), seed=SEEDS)),
    _effect("flood", "flood", dict(), [
        "flooding with water", "the water level rises until everything is submerged", "sinking underwater",
        "a rising tide drowns the scene", "water fills the frame from the bottom",
        "the picture goes under the sea", "rising water swallows everything",
    ]),
    # -- transitions ----------------------------------------------------------------------------------
    _effect("iris-close", "iris", dict(), [
        "an iris closing", "a circle closes in to black", "iris out like an old cartoon ending",
        "the view shrinks to a circle and disappears", "a circular wipe to black",
        "that's all folks, the circle closes", "a shrinking spotlight leaves darkness",
    ]),
    _effect("wipe", "wipe", dict(side="left", level=0.0), [
        "a wipe to black from the left", "black sweeps across from left to right", "a curtain of black slides across",
        "wiped away from the left", "a hard-edged transition sweeping right",
        "darkness slides in from the left side", "a left-to-right wipe",
    ], dict(level=(0.0, 0.05))),
]

_HELDOUT_VALUES: list[Effect] = [
    *[_value(f"hue-{colour}", "hue", dict(hue=degrees), _hue_prompts(colour)) for colour, degrees in _HELDOUT_HUES.items()],
    _value("fade-grey", "fade", dict(level=0.5), [
        "fading to grey", "the image fades out to flat grey", "a fade to a grey screen",
        "everything turns a uniform grey", "washing out to a dull grey",
        "greyed out completely", "dissolving into featureless grey",
    ]),
    _value("spin-ccw-half", "spin", dict(turns=0.5), _spin_prompts("counterclockwise", "half")),
    _value("zoom-in-medium", "zoom", dict(factor=3.5), [
        "zooming in quickly", "a brisk zoom into the centre", "the camera moves in fast, but not a crash",
        "a quick push in toward the middle", "zoom in at a good pace",
        "closing in swiftly on the centre", "a fairly fast zoom into the subject",
    ]),
    _value("slide-up-right", "slide", dict(dx=0.35, dy=-0.35), _slide_prompts("diagonally up and to the right")),
    _value("motion-blur-vertical", "motion_blur", dict(axis="y", length=0.5), [
        "vertical motion blur", "streaking up and down with speed", "a speed blur from top to bottom",
        "smeared vertically as if falling fast", "whooshing downward in a blur",
        "vertical speed streaks", "dropping so fast it streaks vertically",
    ]),
    _value("wave-vertical", "wave", dict(axis="y", amplitude=0.08, waves=2.0, cycles=2.0), [
        "waving up and down", "the image undulates vertically", "vertical waves roll across the picture",
        "columns bob up and down like water", "a vertical wavy distortion",
        "it ripples up and down like a wave passing", "the scene heaves in vertical waves",
    ]),
]

_BY_NAME_BASE = {e.name: e for e in _BASE}


def _compose(name: str, first: str, second: str, prompts: list[str], split: str = "heldout") -> Effect:
    """Two named effects at once: their params nested under their families, jitter prefixed."""
    a, b = _BY_NAME_BASE[first], _BY_NAME_BASE[second]
    jitter = {f"{e.family}.{k}": v for e in (a, b) for k, v in e.jitter.items()}
    return _effect(name, f"{a.family}+{b.family}", {a.family: a.params, b.family: b.params}, prompts, jitter,
                   split=split, holdout="composition" if split == "heldout" else None)


_COMPOSITIONS: list[Effect] = [
    # trained compositions: teach that two effects can happen at once
    _compose("spin-ccw-blue", "spin-ccw", "hue-blue", [
        "spinning counterclockwise while turning blue", "it rotates anticlockwise as a blue tint spreads",
        "a counterclockwise spin into shades of blue", "turning counterclockwise as everything goes blue",
        "spinning left and washing blue", "whirling anticlockwise into blue",
        "a counterclockwise twirl that tints everything blue",
    ], split="train"),
    _compose("zoom-in-fade-white", "zoom-in", "fade-white", [
        "zooming into white light", "pushing in as the picture fades to white", "the camera moves in and everything whites out",
        "a zoom into a blank white screen", "closing in on the centre while washing out to white",
        "rushing toward the light, fading to white", "zoom in and bleach to white",
    ], split="train"),
    _compose("ripple-invert", "ripple", "invert", [
        "rippling into a negative", "water ripples while the colours invert", "concentric waves turn it into a negative",
        "rippling as light and dark swap", "a pond ripple that inverts the picture",
        "waves spread out and the colours flip", "the image ripples and becomes a negative",
    ], split="train"),
    # held-out compositions: pairings no trained effect makes
    _compose("spin-fade-black", "spin-cw", "fade-black", [
        "spin while fading to black", "rotating clockwise as it fades to darkness", "a clockwise spin into black",
        "spinning clockwise and darkening", "turning like a wheel as the lights go out",
        "twirling clockwise into a black screen", "it spins away into darkness",
    ]),
    _compose("melt-red", "melt", "hue-red", [
        "melting into red", "melting while everything turns red", "dripping down in shades of red",
        "the subject melts and goes red", "liquefying into a red puddle",
        "a red meltdown", "oozing downward as the colours turn crimson",
    ]),
    _compose("zoom-in-desaturate", "zoom-in", "desaturate", [
        "zooming in as the colour drains away", "pushing in while turning black and white",
        "a zoom into greyscale", "closing in on the centre as it loses colour",
        "the camera moves in and the picture goes monochrome",
        "magnifying the middle while fading to grey tones", "zoom in to black and white",
    ]),
    _compose("pixelate-invert", "pixelate", "invert", [
        "pixelating into a negative", "breaking into big pixels as the colours invert",
        "blocky pixels with inverted colours", "going low-res and negative at once",
        "a mosaic of squares in negative colours", "pixelated and inverted", "chunky inverted pixels",
    ]),
    _compose("swirl-fade-white", "swirl-cw", "fade-white", [
        "swirling into white", "a clockwise swirl that fades to white", "twisting into a spiral and washing out",
        "stirred into a whirlpool of white", "swirling clockwise as it turns white",
        "a spiral twist into a whiteout", "whirling round while bleaching to white",
    ]),
    _compose("shake-glitch", "shake", "glitch", [
        "shaking and glitching", "an earthquake with a corrupted signal", "the camera shakes as the video glitches",
        "jolting violently with digital tearing", "trembling and breaking up into glitches",
        "a glitchy, shaky broken feed", "shaky footage with datamosh errors",
    ]),
    _compose("inflate-rainbow", "inflate", "rainbow", [
        "inflating with rainbow colours", "swelling up while cycling through the rainbow",
        "a psychedelic balloon puffing up", "bulging outward as the hues rotate",
        "blowing up like a rainbow balloon", "puffing up in trippy colours", "it balloons out in shifting rainbow hues",
    ]),
    _compose("blur-zoom-out", "blur-out", "zoom-out", [
        "zooming out while blurring", "pulling back out of focus", "the image shrinks away and goes soft",
        "receding into a blur", "a blurry zoom out",
        "backing away as the focus melts", "drifting into the distance, losing focus",
    ]),
]

EFFECTS: tuple[Effect, ...] = tuple(_BASE + _COMPOSITIONS[:3] + _HELDOUT_VALUES + _COMPOSITIONS[3:])
