"""The monthly report's PDF, fetched from stats' API when its notice is sent (stats.reports.v1 carries only the
report's id: a PDF of some hundred kilobytes is no record for the bus). Notify asks with the operator key it is
given like every service (CONTRACT.md: the reports' routes take the operator key); the PDF holds no personal
data. Fetched once per sender batch and report, not once per recipient."""

from __future__ import annotations

import uuid

import aiohttp

from .channels import SendFailed

PDF = "application/pdf"


class ReportFetcher:
    def __init__(self, stats_url: str, key: str, timeout_s: float) -> None:
        self.stats_url = stats_url.rstrip("/")
        self.key = key
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._cache: dict[uuid.UUID, bytes] = {}

    async def pdf(self, report_id: uuid.UUID) -> bytes:
        """The report's PDF; raises SendFailed: transient while stats is away or the report not ready, permanent
        when stats knows no such report."""
        if report_id in self._cache:
            return self._cache[report_id]
        url = f"{self.stats_url}/v1/stats/reports/{report_id}"
        headers = {"Authorization": f"Bearer {self.key}", "Accept": PDF}
        try:
            async with (
                aiohttp.ClientSession(timeout=self.timeout) as session,
                session.get(url, headers=headers, allow_redirects=False) as response,
            ):
                status, kind, content = response.status, response.content_type, await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise SendFailed(f"stats unreachable for the report: {type(exc).__name__}", False) from None
        if status == 404:
            raise SendFailed("stats knows no such report", True)
        if status != 200 or kind != PDF:
            raise SendFailed(f"stats answered {status} for the report", False)
        self._cache = {report_id: content}  # the one report being sent to its recipients; no more kept
        return content
