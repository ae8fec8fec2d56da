"""`python -m leadscore.presentation.figure_worker PAYLOAD`: draw a training report's figures in a process of
their own (see `model_report.FigureJob`). PAYLOAD is a pickle written by the training run itself; the PNG files
go into the report folder it names, and their paths are printed as JSON."""

from __future__ import annotations

import json
import sys


def main(argv: list[str]) -> int:
    import pickle
    from pathlib import Path

    from leadscore.presentation.training_plots import draw_report_figures

    if len(argv) != 1:
        sys.stderr.write("usage: python -m leadscore.presentation.figure_worker PAYLOAD\n")
        return 2
    try:
        source = Path(argv[0])
        with source.open("rb") as handle:
            payload = pickle.load(handle)  # noqa: S301 - written by the parent training run, never by a user
        source.unlink(missing_ok=True)  # read: not needed again, even if the parent is gone
        images = draw_report_figures(payload["parts"], payload["directory"])
    except Exception as exc:  # the parent names the error in its warning and draws the figures itself
        sys.stderr.write(f"{type(exc).__name__}: {exc}\n")
        return 1
    sys.stdout.write(json.dumps({key: str(path) for key, path in images.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
