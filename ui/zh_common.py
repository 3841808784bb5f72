"""Chinese for text the app computes at run time and that several areas share (see ``ui.i18n.tr``)."""

from __future__ import annotations

ZH: dict[str, str] = {}
