"""An AST's recipe: its ``model:`` section and the configuration it gives with the data, and the
keys only a family whose calls take a patch size has: each phase's patch sampler
(``phases[].patch``), hints describing the initial weights (``init.source_*``) and the
distillation teacher's patch (``loss.teacher_patch_size``), registered as ``RECIPE_KEYS``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ...constants import AXES, PATCH_DRAWS, PATCH_SAMPLERS, RESIZE_METHODS
from ...recipe_checks import ConfigError, FamilyKeys, choice, positive
from ...resize import to_pair
from ..patchout import Patchout
from ..section import PresetSection
from .config import PRESETS, ASTConfig

__all__ = ["ASTSection", "config_from_recipe", "PatchSampling", "PatchoutSettings", "SourceHints", "TeacherPatch",
           "RECIPE_KEYS"]


@dataclass
class ASTSection(PresetSection):
    """The network. ``preset`` gives the widths (tiny/small/base); explicit fields override it.

    ``patch_size`` is the stored (base) kernel; FlexiAST keeps 16 and resizes it per step.
    ``stride`` applies at that kernel (AST's overlapping 10). ``prefix_tokens``: 2, DeiT's
    cls and distillation tokens (AST's backbone), or 1, a ViT's [CLS] (FlexiAST's standard
    ASTs, Sec. 3.2); it must match the initial weights'. ``partial_patches``: ``drop`` (AST's
    and the FlexiAST authors' floor) or ``pad`` (zeros to whole patches, the ceil grid of
    FlexiAST Sec. 2.2). ``pooling``: what the classifier reads, ``prefix`` (AST) or ``mean``
    of the patch tokens (SSAST's fine-tuning default). ``num_classes`` and the input size
    come from the data and features.
    """

    arch: str = ASTConfig.arch
    preset: str | None = "base"
    embed_dim: int | None = None
    depth: int | None = None
    num_heads: int | None = None
    mlp_ratio: float | None = None
    patch_size: int | list[int] = 16
    stride: int | list[int] | None = None
    prefix_tokens: int = 2
    partial_patches: str = "drop"
    pooling: str = "prefix"
    drop_rate: float = 0.0
    drop_path_rate: float = 0.0

    presets: ClassVar[dict] = PRESETS
    width_fields: ClassVar[tuple[str, ...]] = ("embed_dim", "depth", "num_heads", "mlp_ratio")
    required: ClassVar[tuple[str, ...]] = ("embed_dim", "depth", "num_heads")


def config_from_recipe(section: ASTSection, *, num_classes: int, input_fdim: int, input_tdim: int,
                       labels=None, config_class: type = ASTConfig) -> ASTConfig:
    """The AST a recipe trains: its section's network on the data's classes and input size
    (``config_class``: an AST's configuration or a subclass's, a PaSST's).

    Every check is :class:`ASTConfig`'s; a ``ValueError`` names the field."""
    return config_class(num_classes=num_classes, input_fdim=input_fdim, input_tdim=input_tdim,
                        patch_size=to_pair(section.patch_size, "patch_size"),
                        stride=None if section.stride is None else to_pair(section.stride, "stride"),
                        prefix_tokens=section.prefix_tokens, partial_patches=section.partial_patches,
                        pooling=section.pooling, drop_rate=section.drop_rate, drop_path_rate=section.drop_path_rate,
                        labels=labels, **section.widths())


@dataclass
class PatchSampling:
    """Patch sizes of a phase's steps. ``fixed`` uses ``sizes[0]``; ``uniform`` draws from
    ``sizes``; ``weighted`` draws with ``weights``. ``axes``: ``both`` (p x p), ``time``
    (base_f x p, FlexiAST's speaker setting) or ``freq`` (p x base_t). None = the model's
    stored size. ``resize``: how each step's kernel is made from the stored one, ``pi``
    (PI-resize, FlexiAST eq. 3) or ``bl`` (bilinear, antialiased: the BL FlexiAST of
    FlexiAST Sec. 3.4 item 2, Fig. 4b); the gradient flows through either. ``draw``: ``step``
    (one size per optimizer step, from ``(seed, step)``) or ``clip`` (each clip of a packed
    batch at its own size, from ``(seed, step, clip)``; needs ``data.batching: packed``)."""

    sampler: str = "fixed"
    sizes: list[int] | None = None
    weights: list[float] | None = None
    axes: str = "both"
    resize: str = "pi"
    draw: str = PATCH_DRAWS[0]

    def check(self, ctx) -> None:
        """The sampler is well formed, and phase ``ctx.phase``'s stored kernel and every patch
        it draws fit its (compressed) input."""
        key = ctx.key
        choice(self.sampler, PATCH_SAMPLERS, f"{key}.sampler")
        choice(self.axes, AXES, f"{key}.axes")
        choice(self.resize, RESIZE_METHODS, f"{key}.resize")
        choice(self.draw, PATCH_DRAWS, f"{key}.draw")
        if self.draw == "clip" and ctx.cfg.data.batching != "packed":
            raise ConfigError(f"{key}.draw: clip draws a patch size per clip inside a packed batch; data.batching is "
                              f"{ctx.cfg.data.batching} (use packed, or draw: step)")
        if self.sizes is not None and (not self.sizes or any(p < 1 for p in self.sizes)):
            raise ConfigError(f"{key}.sizes: {self.sizes} must be a non-empty list of positive sizes")
        if self.sampler == "fixed" and self.sizes is not None and len(self.sizes) != 1:
            raise ConfigError(f"{key}.sizes: a fixed sampler takes one size, got {self.sizes}")
        if self.sampler == "weighted":
            if self.weights is None or self.sizes is None or len(self.weights) != len(self.sizes):
                raise ConfigError(f"{key}.weights: a weighted sampler needs one weight per size")
            if any(w < 0 for w in self.weights) or not sum(self.weights) > 0:
                raise ConfigError(f"{key}.weights: {self.weights} must be non-negative with a positive sum")
        elif self.weights is not None:
            raise ConfigError(f"{key}.weights: only the weighted sampler takes weights")
        self._check_fit(ctx)

    @staticmethod
    def _check_fit(ctx) -> None:
        cfg, features, i = ctx.cfg, ctx.features, ctx.phase
        comp = cfg.phase_compression(i)
        frames, bins = features.frames(comp), features.num_mel_bins
        kf, kt = cfg.phase_geometry(i, features)["patch_size"]
        if kf > bins or kt > frames:
            raise ConfigError(f"phases[{i}].compression: the stored {kf}x{kt} kernel (model.patch_size, x C in a "
                              f"patch phase) is larger than the phase's input of {bins} bins x {frames} frames "
                              f"(compression {comp})")
        for pf, pt in (point.patch for point in cfg.phase_points(i, features)):
            if pf > bins or pt > frames:
                raise ConfigError(f"{ctx.key}.sizes: patch {pf}x{pt} (freq x time) is larger than the phase's "
                                  f"input of {bins} bins x {frames} frames (compression {comp})")


@dataclass
class PatchoutSettings:
    """``phases[].patchout``: the patch tokens a phase's training steps drop (PaSST's patchout,
    Koutini et al., Interspeech 2022; :mod:`flexiast.models.patchout`): ``time`` columns and
    ``freq`` rows (structured), then ``tokens`` (unstructured), each a count (an integer) or a
    fraction of the grid (a float in [0, 1)). Every clip's choice is drawn from ``(seed, step,
    clip)``; validation and test keep every token. 0 everywhere (the default): no patchout."""

    time: int | float = 0
    freq: int | float = 0
    tokens: int | float = 0

    def patchout(self) -> Patchout:
        return Patchout(self.time, self.freq, self.tokens)

    def check(self, ctx) -> None:
        """The amounts are counts or fractions; the phase's batches are tensors (not packed), and
        of one length unless the amounts are fractions (a length bucket may be short); and on the
        grid of every patch size the phase draws, at its input length, some column, row and token
        is left."""
        key, cfg, features, i = ctx.key, ctx.cfg, ctx.features, ctx.phase
        try:
            patchout = self.patchout()
        except ValueError as e:
            raise ConfigError(f"{key}: {e}") from None
        if not patchout.active:
            return
        if cfg.data.batching == "packed":
            raise ConfigError(f"{key}: patchout drops the same number of tokens from every clip of a batch; "
                              "data.batching: packed gives each clip its own (use fixed or bucketed)")
        counts = [n for n in ("time", "freq", "tokens") if isinstance(getattr(self, n), int) and getattr(self, n)]
        if counts and cfg.data.batching == "bucketed":
            raise ConfigError(f"{key}.{counts[0]}: a count of {getattr(self, counts[0])} may leave nothing of a short "
                              "bucket's grid (data.batching: bucketed); give a fraction (a float in [0, 1)), "
                              "which keeps at least one of every axis")
        config = cfg.model_config(num_classes=1, features=features).replace(**cfg.phase_geometry(i, features))
        comp = cfg.phase_compression(i)
        frames, bins = features.frames(comp), features.num_mel_bins
        for point in cfg.phase_points(i, features):
            patch, stride = config.resolve_patch(point.patch)
            try:
                patchout.kept(config.grid_at((bins, frames), patch, stride))
            except ValueError as e:
                name = f" ({cfg.phases[i].name})" if cfg.phases[i].name else ""
                raise ConfigError(f"{key}: phase {i}{name} at patch {patch[0]}x{patch[1]} on {bins} bins x "
                                  f"{frames} frames (compression {comp}): {e}") from None


@dataclass
class SourceHints:
    """``init.source_*``: the initial weights' stride and input size, where the file's shapes are
    ambiguous (see ``AST.from_pretrained``)."""

    source_stride: int | None = None
    source_input_tdim: int | None = None
    source_input_fdim: int | None = None

    def check(self, ctx) -> None:
        for name in ("source_stride", "source_input_tdim", "source_input_fdim"):
            positive(getattr(self, name), f"init.{name}")


@dataclass
class TeacherPatch:
    """``loss.teacher_patch_size``: the patch the distillation teacher runs at (default: its own)."""

    teacher_patch_size: int | list[int] | None = None

    def check(self, ctx) -> None:
        size = self.teacher_patch_size
        if size is not None and min(to_pair(size, "loss.teacher_patch_size")) < 1:
            raise ConfigError(f"loss.teacher_patch_size: {size} must be positive")


#: Why a family whose calls take no patch size is refused an AST's keys.
NO_PATCH = "a {arch} model's calls take no patch size"
#: The recipe keys an AST takes besides its ``model:`` section.
RECIPE_KEYS = (
    FamilyKeys("phases", PatchSampling, "patch", NO_PATCH + "; remove the section (it has nothing to draw)"),
    FamilyKeys("phases", PatchoutSettings, "patchout",
               "patchout drops patch tokens from an AST's grid (an SSAST fine-tunes as one); a {arch} model "
               "has no such grid to drop from in training"),
    FamilyKeys("init", SourceHints, refusal="describes an AST file; a {arch} model's weights need none"),
    FamilyKeys("loss", TeacherPatch, refusal=NO_PATCH),
)
