"""``POST /api/collections/{name}/index`` (a background ingest job, ``--allow-write`` only) and ``GET /api/jobs/{id}``."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

import audiosim
from audiosim.files import jsonable
from audiosim.service.catalog import ServedCollection
from audiosim.service.context import ServiceContext, base_path
from audiosim.service.errors import Forbidden, NotFound
from audiosim.service.jobs import Job
from audiosim.service.routes.deps import context, served
from audiosim.service.schemas import ErrorResponse, IndexRequest, JobOut
from audiosim.service.security import folder_under_root

router = APIRouter(tags=["jobs"])


def _job_out(request: Request, job: Job) -> JobOut:
    return JobOut(**job.to_dict(), url=f"{base_path(request)}/api/jobs/{job.id}")


@router.post("/api/collections/{name}/index", response_model=JobOut, status_code=202,
             responses={403: {"model": ErrorResponse}, 404: {"model": ErrorResponse}},
             summary="Index a folder under --root into the collection, in the background (needs --allow-write)")
async def start_index(body: IndexRequest, request: Request, s: ServedCollection = Depends(served),
                      ctx: ServiceContext = Depends(context)) -> JobOut:
    if not ctx.config.allow_write:
        raise Forbidden("this server is read-only; start it with --allow-write --root DIR to index folders")
    folder = folder_under_root(body.folder, ctx.config.root)

    def run(report) -> dict:

        done = {"files": 0}

        def on_file(_item) -> None:
            done["files"] += 1
            report(files_done=done["files"])

        result = audiosim.index_folder(folder, s.root, prune=body.prune, label_from=body.label_from, on_file=on_file,
                                       within=ctx.config.root)  # no file symlink out of --root is read
        s.snapshot()  # the warm searcher picks up the new revision now, not on the next query
        return jsonable(result.to_dict())

    job = ctx.jobs.start(kind="index", collection=s.name,
                         params={"folder": str(folder.relative_to(ctx.config.root.resolve())) or ".",
                                 "prune": body.prune, "label_from": body.label_from}, fn=run)
    return _job_out(request, job)


@router.get("/api/jobs/{job_id}", response_model=JobOut, responses={404: {"model": ErrorResponse}},
            summary="An index job's state and progress")
async def get_job(job_id: str, request: Request, ctx: ServiceContext = Depends(context)) -> JobOut:
    job = ctx.jobs.get(job_id)
    if job is None:
        raise NotFound(f"no job {job_id!r} (jobs are kept in memory while the server runs)")
    return _job_out(request, job)


@router.get("/api/jobs", response_model=list[JobOut], summary="Recent jobs, newest first")
async def list_jobs(request: Request, ctx: ServiceContext = Depends(context)) -> list[JobOut]:
    return [_job_out(request, j) for j in ctx.jobs.list()]
