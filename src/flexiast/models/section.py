"""What a recipe's ``model:`` section shares across families: a named size (``preset``) whose
widths the fields a recipe gives override.

A family's section is a dataclass deriving from :class:`PresetSection`; it names its
``presets`` (the family's, :attr:`flexiast.models.ModelFamily.presets`), the ``width_fields``
that override a preset's, and those a configuration cannot go without (``required``).
"""

from __future__ import annotations

from typing import ClassVar

__all__ = ["PresetSection"]


class PresetSection:
    """``preset`` (a name of :attr:`presets`, or None) and the :attr:`width_fields` of a recipe's
    model section, merged by :meth:`widths`."""

    preset: str | None
    presets: ClassVar[dict]
    width_fields: ClassVar[tuple[str, ...]]
    #: Width fields a configuration needs: without a preset, the recipe must give them.
    required: ClassVar[tuple[str, ...]]

    def widths(self) -> dict:
        """The preset's widths, then the fields given (those not None); a ``ValueError`` names an
        unknown preset, or the first required field that neither gives."""
        if self.preset is not None and self.preset not in self.presets:
            raise ValueError(f"preset: {self.preset!r} is not one of {', '.join(self.presets)}")
        widths = dict(self.presets[self.preset]) if self.preset else {}
        widths.update({k: getattr(self, k) for k in self.width_fields if getattr(self, k) is not None})
        missing = [k for k in self.required if k not in widths]
        if missing:
            need = " and ".join(filter(None, (", ".join(self.required[:-1]), self.required[-1])))
            raise ValueError(f"{missing[0]}: without a preset give {need} (missing {', '.join(missing)})")
        return widths
