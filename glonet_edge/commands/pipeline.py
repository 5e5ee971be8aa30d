"""glonet pipeline CONFIG.toml: run train → export → quantize → compile → profile → simulate → report."""

from __future__ import annotations

import argparse

from ._output import add_json_flag, emit


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pipeline", help="run the whole toolchain from one TOML config (unchanged stages are skipped)",
                       description="Run the passes configured in CONFIG (see glonet_edge/configs/demo.toml for every "
                                   "section). A pass whose config and inputs did not change since its last success "
                                   "is skipped; after a failure, running again resumes at the failed pass.")
    p.add_argument("config", help="pipeline TOML file")
    p.add_argument("--workdir", default=None, help="override [pipeline] workdir")
    p.add_argument("--force", action="store_true", help="run every pass even if nothing changed")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_json_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..pipeline import PipelineConfig

    config = PipelineConfig.from_toml(args.config, workdir=args.workdir)
    return run_pipeline(args, config)


def run_pipeline(args: argparse.Namespace, config) -> int:
    from ..pipeline import Pipeline

    pipeline = Pipeline(config, progress=not (args.quiet or args.json))
    results = pipeline.run(force=args.force)
    rows = [{"stage": r.name, "status": r.status, "seconds": round(r.seconds, 1), "summary": r.summary} for r in results]
    emit(args, {"workdir": str(pipeline.workdir), "stages": rows}, rows,
         title=f"pipeline finished in {sum(r.seconds for r in results):.1f} s (work directory {pipeline.workdir})")
    return 0
