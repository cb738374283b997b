"""Shipped YAML configs (package data); ``configs.path("train/smoke.yaml")`` finds one."""

from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parent


def path(relative: str) -> Path:
    return CONFIG_DIR / relative
