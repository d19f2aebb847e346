"""``GceSandbox``: the local Compute Engine, started and stopped as one object.

::

    with GceSandbox() as sandbox:
        clouds_yaml = sandbox.write_clouds_yaml()
        cloud = cloudnorm.connect("sandbox-gce", config_files=[str(clouds_yaml)])

Its clouds (:meth:`GceSandbox.clouds`):

- ``sandbox-gce``: project ``cloudnorm-sandbox``, zone us-central1-a; servers go to the
  ``default`` network, whose ``default-allow-ssh`` rule lets TCP 22 in;
- ``sandbox-gce-custom``: the same project, the custom-mode network ``custom-vpc``, which
  has no rule for TCP 22;
- ``sandbox-gce-oslogin``: project ``cloudnorm-oslogin``, whose metadata says
  ``enable-oslogin=TRUE``.

Its images differ in where their host keys show (``catalog.HOST_KEY_CHANNELS``): the
Ubuntu ones print them on the serial console (cloud-init), the Debian ones print none there
and publish them in the instance's guest attributes (Google's guest agent), which the data
plane writes where the instance's metadata turns guest attributes on.

Every entry uses ``credentials: anonymous``: nothing is ever sent to Google, and no
credential lookup (which would probe the GCE metadata server) happens.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cloudnorm.testing.gce import catalog
from cloudnorm.testing.gce.api import Api, Compute, Fault, Server
from cloudnorm.testing.request_log import read_requests

CLOUD = "sandbox-gce"


class GceSandbox:
    """The compute v1 endpoint on 127.0.0.1; ``start()``/``stop()`` or a ``with`` block.

    ``endpoint_url`` is where it answers, ``request_log`` its JSON-lines log, and
    ``console_dir`` where an instance's serial console text is read from
    (``<instance id>.log``, written by the data plane). ``boot_seconds`` is how long an
    instance takes from insert to RUNNING.
    """

    projects = (catalog.PROJECT, catalog.OSLOGIN_PROJECT)
    zone = catalog.ZONE

    def __init__(self, workdir: Path | str | None = None, *, boot_seconds: float = 0.6,
                 delete_seconds: float = 0.4) -> None:
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="cloudnorm-gce-")).absolute()
        self.request_log = self.workdir / "requests.jsonl"
        self.console_dir = self.workdir / "consoles"
        self.endpoint_url = ""
        self.compute: Compute | None = None
        self._boot_seconds = boot_seconds
        self._delete_seconds = delete_seconds
        self._server: Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> GceSandbox:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.console_dir.mkdir(parents=True, exist_ok=True)
        try:
            server = Server(self.request_log)
            self.endpoint_url = f"http://127.0.0.1:{server.server_address[1]}"
            self.compute = Compute(self.endpoint_url, self.console_dir, self._boot_seconds,
                                   self._delete_seconds)
            server.api = Api(self.compute)
            self._server = server
            self._thread = threading.Thread(target=server.serve_forever,
                                            kwargs={"poll_interval": 0.1},
                                            name="gce-sandbox", daemon=True)
            self._thread.start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self._server is not None:
            if self._thread is not None:
                self._server.shutdown()
                self._thread.join(timeout=10)
            self._server.server_close()
            self._server = None
            self._thread = None
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> GceSandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def reset(self) -> None:
        """Forget every instance, disk, rule and operation; seed the projects again."""
        assert self.compute is not None and self._server is not None
        compute = Compute(self.endpoint_url, self.console_dir, self._boot_seconds,
                          self._delete_seconds)
        for path in self.console_dir.glob("*.log"):
            path.unlink(missing_ok=True)
        self.compute = compute
        self._server.api = Api(compute)

    # -- clouds.yaml ----------------------------------------------------------------------
    def clouds(self) -> dict[str, dict[str, Any]]:
        """clouds.yaml entries for the sandbox."""
        def entry(project: str, **extra: Any) -> dict[str, Any]:
            return {"cloudnorm": {"provider": "gce", "project": project, "zone": self.zone,
                                  "endpoint_url": self.endpoint_url, "credentials": "anonymous",
                                  **extra}}
        return {CLOUD: entry(catalog.PROJECT),
                f"{CLOUD}-custom": entry(catalog.PROJECT, network=catalog.CUSTOM_NETWORK),
                f"{CLOUD}-oslogin": entry(catalog.OSLOGIN_PROJECT)}

    def write_clouds_yaml(self, path: Path | str | None = None) -> Path:
        """Write the sandbox's clouds to ``path`` (default: in the workdir); the clouds of
        an existing file there (another sandbox's) are kept."""
        import yaml

        target = Path(path or self.workdir / "clouds.yaml")
        document: dict[str, Any] = {}
        if target.exists():
            document = yaml.safe_load(target.read_text(encoding="utf-8")) or {}
        document["clouds"] = {**(document.get("clouds") or {}), **self.clouds()}
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            yaml.safe_dump(document, handle, sort_keys=False)
        return target

    # -- access for tests and the data plane -------------------------------------------
    def requests(self, since: float | None = None, service: str | None = "compute",
                 project: str | None = None) -> list[dict[str, Any]]:
        """Logged requests (by default the clients', not the data plane's)."""
        return read_requests(self.request_log, since=since, service=service, project=project)

    def client(self, kind: str) -> Any:
        """A compute_v1 client of the sandbox (``"InstancesClient"``, ...), never of Google:
        anonymous credentials, the sandbox's endpoint."""
        from google.api_core.client_options import ClientOptions
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import compute_v1

        return getattr(compute_v1, kind)(
            transport="rest", credentials=AnonymousCredentials(),
            client_options=ClientOptions(api_endpoint=self.endpoint_url))

    def console_path(self, instance_id: str) -> Path:
        return self.console_dir / f"{instance_id}.log"

    def set_project_metadata(self, project: str, key: str, value: str | None) -> None:
        """Change a project's common instance metadata (None removes the key)."""
        assert self.compute is not None
        with self.compute.lock:
            metadata = self.compute.project(project)["metadata"]
            if value is None:
                metadata.pop(key, None)
            else:
                metadata[key] = value

    @contextlib.contextmanager
    def inject(self, method: str, path: str, code: int, reason: str,
               message: str = "injected by the sandbox",
               times: int | None = None) -> Iterator[Fault]:
        """Answer ``method`` requests whose path matches the regular expression ``path``
        with a Google error (``code``, ``reason``): the first ``times`` of them, or all.
        Yields the fault, whose ``calls`` and ``failed`` count what happened."""
        assert self._server is not None
        fault = Fault(method, path, code, reason, message, times)
        self._server.faults.append(fault)
        try:
            yield fault
        finally:
            self._server.faults.remove(fault)

    @contextlib.contextmanager
    def failing_inserts(self, code: str, message: str, times: int = 1) -> Iterator[None]:
        """Accept the next ``times`` instance inserts, then end their operations with the
        error ``code`` (e.g. ``ZONE_RESOURCE_POOL_EXHAUSTED``) and no instance."""
        assert self.compute is not None
        from cloudnorm.testing.gce.api import ApiError

        with self.compute.lock:
            self.compute.insert_failures[:] = [ApiError(503, code, message)] * times
        try:
            yield
        finally:
            with self.compute.lock:
                self.compute.insert_failures.clear()

    def dataplane(self, fleet: Any, interval: float = 0.2) -> Any:
        """The data plane reconciler (not started) keeping ``fleet`` in step with this
        sandbox; see :mod:`cloudnorm.testing.gce_dataplane`."""
        from cloudnorm.testing.gce_dataplane import GceDataPlaneSync

        return GceDataPlaneSync(self.endpoint_url, self.projects, self.console_dir, fleet,
                                interval=interval)


def run(command: list[str], workdir: Path | None = None) -> int:
    """Start a sandbox, run ``command`` against it, stop it; returns the command's status.

    The command's environment has ``OS_CLIENT_CONFIG_FILE`` and
    ``CLOUDNORM_SANDBOX_CLOUDS_YAML`` naming the sandbox's clouds.yaml, and
    ``NO_GCE_CHECK``/``GCE_METADATA_HOST`` set so that nothing probes the GCE metadata
    server for credentials.
    """
    import subprocess
    import sys

    with GceSandbox(workdir) as sandbox:
        path = sandbox.write_clouds_yaml()
        env = dict(os.environ, OS_CLIENT_CONFIG_FILE=str(path),
                   CLOUDNORM_SANDBOX_CLOUDS_YAML=str(path), NO_GCE_CHECK="true",
                   GCE_METADATA_HOST="127.0.0.1:9", GCE_METADATA_IP="127.0.0.1:9")
        try:
            return subprocess.call(command, env=env)
        except OSError as error:
            print(f"error: cannot run {command[0]}: {error}", file=sys.stderr)
            return 127
