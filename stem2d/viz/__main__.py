"""``python -m stem2d.viz RUN_DIR [RUN_DIR ...]``: (re)write the report.html of finished runs."""

import argparse
import logging

from stem2d.viz.report import write_report

parser = argparse.ArgumentParser(prog="python -m stem2d.viz", description=__doc__)
parser.add_argument("run_dirs", nargs="+", help="run folders (outputs/infer/runs/<stamp>)")
args = parser.parse_args()
logging.basicConfig(level=logging.INFO, format="%(message)s")
for run_dir in args.run_dirs:
    logging.getLogger("stem2d.viz").info("report: %s", write_report(run_dir).resolve().as_uri())
