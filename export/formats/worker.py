"""Entry point of a conversion worker process: ``python -m export.formats.worker JOB_JSON``.

Exit 0 with the output file written, or print ``error: ...`` last and exit 1.
"""

from __future__ import annotations

import sys
import threading
import traceback
from pathlib import Path

from export.formats.registry import FORMATS, Format
from export.formats.isolate import Conversion, Job
from export.lifeline import die_with_parent


def run(job: Job) -> None:
    """Convert the main graph into ``job.out``; then, if asked, the probe graph into ``job.probe_out``.

    Each file is written beside its target and renamed into place, so a file
    that exists is whole. A failed probe is written to ``job.probe_error_file``
    and does not fail the job. A format whose converter runs in a process of
    its own converts the probe alongside the main file rather than after it.
    """
    fmt, conversion = FORMATS[job.format], job.conversion()
    if job.probe_out is None or job.probe_source is None:
        _write(fmt, Path(job.source), Path(job.out), conversion)
        return
    probe_source, probe_out = Path(job.probe_source), Path(job.probe_out)

    def probe() -> None:
        try:
            _write(fmt, probe_source, probe_out, conversion)
        except Exception as exc:  # the probe is a diagnostic: its failure is reported, not fatal
            traceback.print_exc()
            assert job.probe_error_file is not None
            job.probe_error_file.write_text(f"{type(exc).__name__}: {exc}".splitlines()[0])

    if not fmt.out_of_process:
        _write(fmt, Path(job.source), Path(job.out), conversion)
        probe()
        return
    alongside = threading.Thread(target=probe, name="probe")
    alongside.start()
    try:
        _write(fmt, Path(job.source), Path(job.out), conversion)
    finally:
        alongside.join()


def _write(fmt: Format, source: Path, out: Path, conversion: Conversion) -> None:
    partial = out.with_name(out.name + ".partial")
    fmt.convert(source, partial, conversion)
    partial.replace(out)


def main(argv: list[str]) -> int:
    try:
        run(Job.from_json(argv[1]))
    except Exception as exc:  # the process boundary: report any failure as one line
        traceback.print_exc()
        print(f"error: {type(exc).__name__}: {exc}".splitlines()[0], file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    die_with_parent()  # killed with the exporting process, however it ends (export.lifeline)
    sys.exit(main(sys.argv))
