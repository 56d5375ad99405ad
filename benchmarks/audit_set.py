"""The ground truth of `benchmarks/audit.py`: a labelled `train/<class>/`, `test/<class>/` folder made by code
from class folders of photos, with problems planted and recorded.

From the source photos (one folder a class), a share of each class goes to `test/`, the rest to `train/`.
Then, each drawn from photos not used for another problem:

- leaks: a byte copy, or an edited copy (re-encoded, resized, cropped a little, brightened, or all of
  these with a mirror and a small turn: `tests/images_factory.edited_copy`), of a test photo in train,
  in the same class;
- label errors: train photos moved to another class folder;
- quality: train photos replaced by a darkened, an overexposed, a blurred, a near-uniform (their mean
  colour with faint noise), a tiny or a banner-shaped version of themselves;
- off-domain pictures drawn here (bar charts, line plots, text pages, patterns) put in train class folders.

Every file has a scene: the source photo it shows (for `tests/data/photos`, whose class folders hold
views of one photo each, the class). A leak is right when its two files show the same scene.
"""

from __future__ import annotations

import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont

from tests.images_factory import edited_copy
from utilities.ids import stored_path

QUALITY_ISSUES = ("dark", "light", "blurry", "low_information", "tiny", "odd_aspect")
"""The quality issues planted, as the audit names them."""

EDITS = ("reencoded", "resized", "cropped", "brightened", "edited")
"""The edits of a near leak, dealt in turn (`edited`: `tests/images_factory.edited_copy`)."""

OFF_DOMAIN = ("bar_chart", "line_plot", "text_page", "pattern")
"""The off-domain pictures, dealt in turn."""

WORDS = ["the", "of", "data", "image", "model", "table", "figure", "result", "value", "method", "sample", "page"]


@dataclass(frozen=True)
class Plan:
    """How many of each problem to plant.

    Attributes:
        test_share: Share of each class's photos put in `test/`.
        exact_leaks: Byte copies of test photos put in train.
        near_leaks: Edited copies of test photos put in train.
        label_errors: Train photos moved to another class folder.
        per_quality: Images planted for each of `dark`, `light`, `blurry`, `low_information`.
        per_size: Images planted for each of `tiny` and `odd_aspect`.
        off_domain: Drawn off-domain pictures.
    """

    test_share: float = 0.2
    exact_leaks: int = 10
    near_leaks: int = 30
    label_errors: int = 60
    per_quality: int = 15
    per_size: int = 5
    off_domain: int = 25


@dataclass
class Truth:
    """What was planted, by stored path (`utilities.ids.stored_path`).

    Attributes:
        root: The folder laid out as `train/<class>/`, `test/<class>/`.
        files: Every file of the set.
        scene: The source photo each file shows.
        exact_leaks: `(test file, train copy)` pairs of identical bytes.
        near_leaks: `(test file, train copy)` pairs of edited copies, with the edit.
        label_errors: Each moved file's true class.
        quality: The files planted with each issue.
        off_domain: The drawn pictures.
    """

    root: Path
    files: list[str] = field(default_factory=list)
    scene: dict[str, str] = field(default_factory=dict)
    exact_leaks: set[tuple[str, str]] = field(default_factory=set)
    near_leaks: dict[tuple[str, str], str] = field(default_factory=dict)
    label_errors: dict[str, str] = field(default_factory=dict)
    quality: dict[str, set[str]] = field(default_factory=lambda: {issue: set() for issue in QUALITY_ISSUES})
    off_domain: set[str] = field(default_factory=set)

    @property
    def near_empty(self) -> set[str]:
        """The near-uniform images: with the off-domain pictures, what the outlier list should lead with."""
        return self.quality["low_information"]

    @property
    def other_problems(self) -> set[str]:
        """Files planted as a problem other than a label error (not counted for or against label errors)."""
        return self.off_domain.union(*self.quality.values())

    def add(self, path: Path, scene: str) -> str:
        """Record a file of the set and return its stored path."""
        stored = stored_path(path)
        self.files.append(stored)
        self.scene[stored] = scene
        return stored


def _save(image: Image.Image, path: Path, quality: int = 90) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, quality=quality)
    return path


def near_copy(source: Path, target: Path, edit: str, rng: random.Random) -> Path:
    """An edited copy of `source` at `target` (one of `EDITS`)."""
    if edit == "edited":
        return edited_copy(source, target, seed=rng.randrange(1 << 30))
    image = Image.open(source).convert("RGB")
    width, height = image.size
    if edit == "resized":
        scale = rng.uniform(0.5, 0.8)
        image = image.resize((int(width * scale), int(height * scale)), Image.Resampling.BICUBIC)
    elif edit == "cropped":
        keep = rng.uniform(0.85, 0.95)
        left, top = rng.randint(0, int(width * (1 - keep))), rng.randint(0, int(height * (1 - keep)))
        image = image.crop((left, top, left + int(width * keep), top + int(height * keep)))
    elif edit == "brightened":
        image = ImageEnhance.Brightness(image).enhance(rng.uniform(1.15, 1.3))
    return _save(image, target, quality=rng.randint(40, 75) if edit == "reencoded" else 90)


def quality_version(source: Path, target: Path, issue: str, rng: random.Random) -> Path:
    """A version of `source` with one quality issue (one of `QUALITY_ISSUES`) at `target`."""
    image = Image.open(source).convert("RGB")
    width, height = image.size
    pixels = np.asarray(image, dtype=np.float32)
    if issue == "dark":  # 10-25 % of the light left
        image = Image.fromarray((pixels * rng.uniform(0.10, 0.25)).astype(np.uint8))
    elif issue == "light":  # overexposed: 10-25 % of the contrast left, next to white
        image = Image.fromarray((255 - (255 - pixels) * rng.uniform(0.10, 0.25)).astype(np.uint8))
    elif issue == "blurry":  # a Gaussian of 1.5-3 % of the longer side
        image = image.filter(ImageFilter.GaussianBlur(max(width, height) * rng.uniform(0.015, 0.03)))
    elif issue == "low_information":  # the mean colour with faint noise
        noise = np.random.default_rng(rng.randrange(1 << 30)).normal(0, rng.uniform(2, 6), pixels.shape)
        image = Image.fromarray(np.clip(pixels.mean(axis=(0, 1)) + noise, 0, 255).astype(np.uint8))
    elif issue == "tiny":
        side = rng.randint(32, 56)
        image = image.resize((side, max(1, side * height // width)), Image.Resampling.BICUBIC)
    elif issue == "odd_aspect":
        band = int(height * rng.uniform(0.3, 0.4))
        top = rng.randint(0, height - band)
        image = image.crop((0, top, width, top + band))
    return _save(image, target)


def off_domain_picture(kind: str, seed: int) -> Image.Image:
    """A drawn picture that is no photo: a bar chart, a line plot, a text page or a pattern."""
    rng = np.random.default_rng(seed)
    width, height = int(rng.integers(300, 480)), int(rng.integers(240, 400))  # aspect under 2: not odd_aspect
    colour = tuple(int(c) for c in rng.integers(0, 256, 3))
    if kind == "pattern":
        ys, xs = np.mgrid[0:height, 0:width]
        period = int(rng.integers(8, 40))
        style = seed % 3
        mask = ((xs // period + ys // period) % 2 == 0) if style == 0 else (np.sin(xs / period + ys / 7.0) > 0)
        if style == 2:
            mask = (np.hypot(xs - width / 2, ys - height / 2) // period) % 2 == 0
        other = np.array([255, 255, 255]) - np.array(colour)
        return Image.fromarray(np.where(mask[..., None], np.array(colour), other).astype(np.uint8))
    paper = int(rng.integers(150, 190)) if kind == "text_page" else 235
    image = Image.new("RGB", (width, height), (paper, paper, paper))
    draw = ImageDraw.Draw(image)
    if kind == "text_page":  # a grey scanned page, so the page is not "light" too
        font = ImageFont.load_default(size=int(rng.integers(14, 22)))
        for line, y in enumerate(range(12, height - 20, font.size + 6)):
            words = rng.choice(WORDS, int(rng.integers(4, 12)))
            draw.text((14 if line % 6 else 30, y), " ".join(words), fill=(20, 20, 20), font=font)
        return image
    left, bottom = 40, height - 30
    draw.line([(left, 10), (left, bottom), (width - 10, bottom)], fill=(0, 0, 0), width=3)
    if kind == "bar_chart":
        bars = int(rng.integers(4, 10))
        step = (width - left - 20) // bars
        for bar in range(bars):
            top = int(rng.integers(20, bottom - 20))
            x = left + 10 + bar * step
            draw.rectangle([x, top, x + step - 8, bottom - 2], fill=colour, outline=(0, 0, 0))
    else:
        for _ in range(int(rng.integers(2, 4))):
            points = np.cumsum(rng.normal(0, 12, 30)) + height / 2
            xs = np.linspace(left + 5, width - 15, 30)
            line = tuple(int(c) for c in rng.integers(0, 200, 3))
            draw.line(list(zip(xs.tolist(), np.clip(points, 15, bottom - 5).tolist(), strict=True)), fill=line, width=4)
        for y in range(30, bottom, 40):
            draw.line([(left, y), (width - 10, y)], fill=(120, 120, 120), width=1)
    return image


def _scene_of(source: Path, views_of_one_scene: bool) -> str:
    return source.parent.name if views_of_one_scene else f"{source.parent.name}/{source.stem}"


def build_set(
    sources: dict[str, list[Path]], folder: Path, plan: Plan, seed: int = 0, views_of_one_scene: bool = False
) -> Truth:
    """Lay out the photos under `folder` as `train/<class>/`, `test/<class>/` and plant the problems.

    Args:
        sources: The photos of each class.
        folder: An empty folder.
        plan: How many of each problem.
        seed: Seed of every draw (which photos, which edits).
        views_of_one_scene: Each class's photos show one scene (`tests/data/photos`).

    Returns:
        The `Truth`.
    """
    rng = random.Random(seed)
    truth = Truth(folder)
    classes = sorted(sources)
    test: list[tuple[str, Path]] = []
    train: list[tuple[str, Path]] = []
    for name in classes:
        photos = sorted(sources[name])
        rng.shuffle(photos)
        cut = max(1, round(len(photos) * plan.test_share))
        test += [(name, photo) for photo in photos[:cut]]
        train += [(name, photo) for photo in photos[cut:]]
    rng.shuffle(test)
    rng.shuffle(train)
    counter = iter(range(1_000_000))

    def target(split: str, name: str, suffix: str = ".jpg") -> Path:
        (folder / split / name).mkdir(parents=True, exist_ok=True)
        return folder / split / name / f"img_{next(counter):05d}{suffix}"

    test_stored = {}
    for name, photo in test:
        path = target("test", name, photo.suffix.lower())
        shutil.copyfile(photo, path)
        test_stored[photo] = (path, truth.add(path, _scene_of(photo, views_of_one_scene)))
    leak_sources = test[: plan.exact_leaks + plan.near_leaks]
    for number, (name, photo) in enumerate(leak_sources):
        original, stored = test_stored[photo]
        if number < plan.exact_leaks:
            copy = target("train", name, original.suffix)
            shutil.copyfile(original, copy)
            truth.exact_leaks.add((stored, truth.add(copy, truth.scene[stored])))
        else:
            edit = EDITS[number % len(EDITS)]
            copy = near_copy(original, target("train", name), edit, rng)
            truth.near_leaks[(stored, truth.add(copy, truth.scene[stored]))] = edit
    quality_plan = [issue for issue in QUALITY_ISSUES[:4] for _ in range(plan.per_quality)]
    quality_plan += [issue for issue in QUALITY_ISSUES[4:] for _ in range(plan.per_size)]
    for number, (name, photo) in enumerate(train):
        scene = _scene_of(photo, views_of_one_scene)
        if number < plan.label_errors:
            wrong = rng.choice([other for other in classes if other != name])
            path = target("train", wrong, photo.suffix.lower())
            shutil.copyfile(photo, path)
            truth.label_errors[truth.add(path, scene)] = name
        elif number < plan.label_errors + len(quality_plan):
            issue = quality_plan[number - plan.label_errors]
            made = quality_version(photo, target("train", name), issue, rng)
            truth.quality[issue].add(truth.add(made, scene))
        else:
            path = target("train", name, photo.suffix.lower())
            shutil.copyfile(photo, path)
            truth.add(path, scene)
    for number in range(plan.off_domain):
        kind = OFF_DOMAIN[number % len(OFF_DOMAIN)]
        path = _save(off_domain_picture(kind, seed * 1000 + number), target("train", rng.choice(classes), ".png"))
        truth.off_domain.add(truth.add(path, f"drawn/{number}"))
    return truth
