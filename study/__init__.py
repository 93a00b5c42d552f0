"""This repository's own experiments (README.md): ``python -m study.NAME``. Nothing outside
study/ imports it."""
