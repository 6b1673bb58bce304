"""A local stand-in for the Hugging Face Hub HTTP API, for tests (a test double, not a Hub).

It speaks just enough of the Hub API that UNMODIFIED ``huggingface_hub`` 2.4.x (and transformers 5.x on top
of it) can ``create_repo``, ``upload_folder``/``create_commit``, ``push_to_hub``, ``list_repo_files``,
``hf_hub_download``, ``snapshot_download`` and ``from_pretrained`` against it. Written against
huggingface_hub 2.4.0: the endpoints and headers below move between client versions, so re-check them (the
client code, not this file, is the reference) when the client is upgraded. tests/hub/test_hub.py passes with
huggingface_hub 2.4.0 and 1.31.0 (the oldest that transformers 5.23 accepts).

Point a client at it with ``HF_ENDPOINT=<server.url>`` and a fresh ``HF_HOME`` (``server.client_env``).
huggingface_hub reads both at import time, so set them before the client process starts.

Endpoints (models and Spaces, ``{repo}`` is ``namespace/name``, ``{kind}`` is ``models`` or ``spaces``):

- ``POST /api/repos/create`` (``visibility``/``private``; 409 + url if it exists)
- ``POST /api/validate-yaml``: the README front matter must be a mapping; ``model-index`` is checked for
  the shape the Hub needs (name, results[].task.type, results[].dataset.{type,name},
  results[].metrics[].{type,value})
- ``GET /api/{kind}/{repo}[/revision/{rev}]`` (repo info with ``sha``, ``private``, ``siblings``)
- ``GET /api/{kind}/{repo}/tree/{rev}[/{path}]`` (``recursive``; no pagination)
- ``POST /api/{kind}/{repo}/preupload/{rev}``: ``uploadMode: "regular"`` for every file, so the client sends
  contents inline (base64) in the commit and never starts LFS or Xet
- ``POST /api/{kind}/{repo}/commit/{rev}`` (NDJSON: header, file, deletedFile, deletedFolder; only ``main``)
- ``HEAD``/``GET /{repo}/resolve/{rev}/{path}`` (a Space's ``/spaces/{repo}/resolve/...``) with
  ``X-Repo-Commit`` and ``ETag`` (the git blob sha1, as the Hub does for non-LFS files;
  ``X-Linked-Size``/``X-Linked-Etag`` only matter for LFS/Xet redirects, which never happen here) and
  ``X-Error-Code`` (RepoNotFound, RevisionNotFound, EntryNotFound) on errors.

Auth: the client sends its token as ``Authorization: Bearer <token>``. ``tokens`` maps valid tokens to user
names; writes need a valid token whose user owns the namespace; private repos are readable only with one
(401 without a token, 404 with someone else's). Every request is recorded (``server.requests``: method,
path, headers, body) so tests can check where a token travelled. Blobs are stored content-addressed under
``root/blobs``; ``server.files(repo_id)`` gives the current contents (``server.files("spaces/" + repo_id)``
a Space's). A Space is stored, never run. Not implemented: LFS/Xet, branches, pull requests, pagination,
gated repos, datasets.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import re
import tempfile
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

# Variables that would send a client elsewhere than HF_HOME / the stand-in (see ``client_env``).
_CLIENT_ENV_OVERRIDES = (
    "HF_HUB_CACHE HUGGINGFACE_HUB_CACHE HF_ASSETS_CACHE HF_TOKEN_PATH HF_XET_CACHE HF_MODULES_CACHE "
    "TRANSFORMERS_CACHE HUGGINGFACE_CO_STAGING HUGGING_FACE_HUB_TOKEN"
).split()


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers.items() if k.lower() == name.lower()), None)


@dataclass
class Repo:
    repo_id: str
    private: bool
    commits: dict[str, dict[str, str]] = field(default_factory=dict)  # commit sha -> {path: blob id}
    head: str = ""
    created_at: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()))


class HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, commit: str | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.commit = status, message, code, commit


class HubServer:
    """The stand-in Hub on ``127.0.0.1`` and a random free port; a context manager."""

    def __init__(self, root: str | Path | None = None, tokens: dict[str, str] | None = None):
        self._tmp = None if root else tempfile.TemporaryDirectory(prefix="hub_server_")
        self.root = Path(root or self._tmp.name)
        (self.root / "blobs").mkdir(parents=True, exist_ok=True)
        self.tokens = dict(tokens or {})
        self.repos: dict[str, Repo] = {}
        self.requests: list[RecordedRequest] = []
        self.lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.hub = self
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="hub-server", daemon=True)

    def __enter__(self) -> HubServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._tmp is not None:
            self._tmp.cleanup()

    def client_env(self, hf_home: str | Path, token: str | None = None) -> dict[str, str | None]:
        """Environment for a client process (``None`` = unset): this endpoint, a fresh HF_HOME, online."""
        env: dict[str, str | None] = dict.fromkeys(_CLIENT_ENV_OVERRIDES)
        env.update(
            HF_ENDPOINT=self.url,
            HF_HOME=str(hf_home),
            HF_HUB_OFFLINE="0",
            TRANSFORMERS_OFFLINE="0",
            HF_TOKEN=token,
            NO_PROXY="127.0.0.1,localhost",
            no_proxy="127.0.0.1,localhost",
        )
        return env

    # -- storage -------------------------------------------------------------------------------------
    def blob(self, blob_id: str) -> bytes:
        return (self.root / "blobs" / blob_id).read_bytes()

    def files(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        repo = self.repos[repo_id]
        return {path: self.blob(b) for path, b in repo.commits[self._commit_sha(repo, revision)].items()}

    def _commit_sha(self, repo: Repo, revision: str) -> str:
        sha = repo.head if revision == "main" else revision
        if sha not in repo.commits:
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return sha

    def _new_commit(self, repo: Repo, tree: dict[str, str], message: str) -> str:
        sha = hashlib.sha1(
            json.dumps([repo.head, sorted(tree.items()), message, time.time()]).encode()
        ).hexdigest()
        repo.commits[sha], repo.head = tree, sha
        return sha

    def _store(self, data: bytes) -> str:
        blob_id = git_blob_sha1(data)
        (self.root / "blobs" / blob_id).write_bytes(data)
        return blob_id

    @staticmethod
    def _key(repo: str, kind: str = "models") -> str:
        """Where a repository is kept in ``self.repos``: a model by its id, a Space as ``spaces/<id>``."""
        return f"spaces/{repo}" if kind == "spaces" else repo

    # -- auth ----------------------------------------------------------------------------------------
    def _user(self, req: RecordedRequest) -> str | None:
        auth = req.header("Authorization")
        if not auth:
            return None
        token = auth.removeprefix("Bearer ").strip()
        if token not in self.tokens:
            raise HubError(401, "Invalid credentials in Authorization header")
        return self.tokens[token]

    def _readable(self, repo_id: str, req: RecordedRequest, kind: str = "models") -> Repo:
        user = self._user(req)
        repo = self.repos.get(self._key(repo_id, kind))
        if repo is None or (repo.private and user != repo_id.split("/")[0]):
            # The Hub answers 401 to anonymous callers and 404 to others, for missing and private repos alike.
            raise HubError(404 if user else 401, "Repository not found", "RepoNotFound")
        return repo

    def _writable(self, repo_id: str, req: RecordedRequest, kind: str = "models") -> Repo:
        user = self._user(req)
        if user is None:
            raise HubError(401, "You must be authenticated to write to a repository")
        repo = self._readable(repo_id, req, kind)
        if user != repo_id.split("/")[0]:
            raise HubError(403, f"You don't have the rights to write to {repo_id}")
        return repo

    # -- endpoints -----------------------------------------------------------------------------------
    def create_repo(self, req, query) -> tuple[int, dict]:
        payload = json.loads(req.body or b"{}")
        user = self._user(req)
        namespace = payload.get("organization") or user
        if user is None or namespace != user:
            raise HubError(401 if user is None else 403, "You don't have the rights to create this repo")
        repo_type = payload.get("type", "model")
        if repo_type not in ("model", "space"):
            raise HubError(400, "only model and Space repositories are supported by the stand-in")
        if repo_type == "space" and not payload.get("sdk"):
            raise HubError(400, "a Space needs an sdk (gradio, docker, static)")
        repo_id = f"{namespace}/{payload['name']}"
        private = payload.get("visibility", "private" if payload.get("private") else "public") != "public"
        key = self._key(repo_id, f"{repo_type}s")
        url = f"{self.url}/{key}"
        with self.lock:
            if key in self.repos:
                return 409, {"error": f"You already created this {repo_type} repo", "url": url}
            repo = self.repos[key] = Repo(repo_id, private)
            self._new_commit(repo, {}, "initial commit")
        return 200, {"url": url, "name": repo_id, "id": repo_id}

    def validate_yaml(self, req, query) -> tuple[int, dict]:
        errors = card_metadata_errors(json.loads(req.body)["content"])
        return (400 if errors else 200), {"errors": [{"message": e} for e in errors], "warnings": []}

    def repo_info(self, req, query, repo, rev=None, kind="models") -> tuple[int, dict]:
        r = self._readable(repo, req, kind)
        sha = self._commit_sha(r, rev or "main")
        siblings = [{"rfilename": p} for p in sorted(r.commits[sha])]
        return 200, {
            "id": repo,
            "modelId": repo,
            "author": repo.split("/")[0],
            "sha": sha,
            "private": r.private,
            "createdAt": r.created_at,
            "lastModified": r.created_at,
            "tags": [],
            "siblings": siblings,
        }

    def tree(self, req, query, repo, rev, path=None, kind="models") -> tuple[int, list]:
        r = self._readable(repo, req, kind)
        files = r.commits[self._commit_sha(r, rev)]
        prefix = f"{path.strip('/')}/" if path else ""
        recursive = query.get("recursive", ["false"])[0].lower() in ("1", "true")
        entries: dict[str, dict] = {}
        for file, blob_id in sorted(files.items()):
            if not file.startswith(prefix):
                continue
            parts = file[len(prefix) :].split("/")
            for depth in range(1, len(parts) if recursive else min(len(parts), 2)):  # folders on the way
                folder = prefix + "/".join(parts[:depth])
                entries[folder] = {"type": "directory", "path": folder, "oid": git_blob_sha1(folder.encode())}
            if recursive or len(parts) == 1:
                size = (self.root / "blobs" / blob_id).stat().st_size
                entries[file] = {"type": "file", "path": file, "oid": blob_id, "size": size}
        if path and not entries:
            raise HubError(404, f"{path} does not exist", "EntryNotFound")
        return 200, list(entries.values())

    def preupload(self, req, query, repo, rev, kind="models") -> tuple[int, dict]:
        r = self._writable(repo, req, kind)
        current = r.commits[self._commit_sha(r, rev)]
        files = json.loads(req.body)["files"]
        return 200, {
            "files": [
                {
                    "path": f["path"],
                    "uploadMode": "regular",
                    "shouldIgnore": False,
                    "oid": current.get(f["path"]),
                }
                for f in files
            ]
        }

    def commit(self, req, query, repo, rev, kind="models") -> tuple[int, dict]:
        r = self._writable(repo, req, kind)
        if rev != "main" or "create_pr" in query:
            raise HubError(400, "the stand-in only commits to main")
        lines = [json.loads(line) for line in req.body.splitlines() if line.strip()]
        header = next((line["value"] for line in lines if line["key"] == "header"), {})
        with self.lock:
            parent = header.get("parentCommit")
            if parent and parent != r.head:
                raise HubError(412, "A commit has happened since. Please refresh and try again.")
            tree = dict(r.commits[r.head])
            for line in lines:
                key, value = line["key"], line["value"]
                if key == "file":
                    tree[value["path"]] = self._store(base64.b64decode(value["content"]))
                elif key == "deletedFile":
                    tree.pop(value["path"], None)
                elif key == "deletedFolder":
                    tree = {
                        p: b for p, b in tree.items() if not p.startswith(value["path"].rstrip("/") + "/")
                    }
                elif key != "header":
                    raise HubError(400, f"unsupported commit operation {key!r} (no LFS/Xet in the stand-in)")
            sha = self._new_commit(r, tree, header.get("summary", ""))
        return 200, {
            "success": True,
            "commitOid": sha,
            "commitUrl": f"{self.url}/{self._key(repo, kind)}/commit/{sha}",
            "pullRequestUrl": None,
        }

    def resolve(self, req, query, repo, rev, path, kind="models") -> tuple[int, bytes, dict]:
        r = self._readable(repo, req, kind)
        sha = self._commit_sha(r, rev)
        blob_id = r.commits[sha].get(path)
        if blob_id is None:
            raise HubError(404, "Entry not found", "EntryNotFound", commit=sha)
        return (
            200,
            self.blob(blob_id),
            {"X-Repo-Commit": sha, "ETag": f'"{blob_id}"', "Content-Type": "application/octet-stream"},
        )


def card_metadata_errors(content: str) -> list[str]:
    """What the Hub's validate-yaml would reject in a README's front matter (a subset of its checks)."""
    match = re.match(r"^---\s*\n(.*?)\n---\s*(\n|$)", content, re.S)
    if not match:
        return []
    try:
        meta = yaml.safe_load(match.group(1))
    except yaml.YAMLError as err:
        return [f"invalid YAML: {err}"]
    if meta is None:
        return []
    if not isinstance(meta, dict):
        return ["metadata must be a mapping"]
    errors = [
        f'"{key}" must be a string'
        for key in ("license", "library_name", "pipeline_tag")
        if key in meta and not isinstance(meta[key], str)
    ]
    tags = meta.get("tags", [])
    if not (isinstance(tags, list) and all(isinstance(t, str) for t in tags)):
        errors.append('"tags" must be a list of strings')
    for i, model in enumerate(meta.get("model-index") or []):
        if not isinstance(model, dict) or not isinstance(model.get("name"), str):
            errors.append(f'"model-index[{i}].name" is required')
            continue
        for j, result in enumerate(model.get("results") or []):
            where = f"model-index[{i}].results[{j}]"
            if not isinstance((result.get("task") or {}).get("type"), str):
                errors.append(f'"{where}.task.type" is required')
            dataset = result.get("dataset") or {}
            if not (isinstance(dataset.get("type"), str) and isinstance(dataset.get("name"), str)):
                errors.append(f'"{where}.dataset" needs "type" and "name"')
            for k, metric in enumerate(result.get("metrics") or []):
                value_ok = isinstance(metric.get("value"), (int, float, str))
                if not (isinstance(metric.get("type"), str) and value_ok):
                    errors.append(f'"{where}.metrics[{k}]" needs "type" and "value"')
    return errors


_REPO = r"(?P<repo>[^/]+/[^/]+)"
_KIND = r"(?P<kind>models|spaces)"
_ROUTES = [
    ("POST", re.compile(r"/api/repos/create"), "create_repo"),
    ("POST", re.compile(r"/api/validate-yaml"), "validate_yaml"),
    ("GET", re.compile(rf"/api/{_KIND}/{_REPO}(?:/revision/(?P<rev>[^/]+))?"), "repo_info"),
    ("GET", re.compile(rf"/api/{_KIND}/{_REPO}/tree/(?P<rev>[^/]+)(?:/(?P<path>.*))?"), "tree"),
    ("POST", re.compile(rf"/api/{_KIND}/{_REPO}/preupload/(?P<rev>[^/]+)"), "preupload"),
    ("POST", re.compile(rf"/api/{_KIND}/{_REPO}/commit/(?P<rev>[^/]+)"), "commit"),
    ("GET", re.compile(rf"/(?P<kind>spaces)/{_REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)"), "resolve"),
    ("GET", re.compile(rf"/{_REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)"), "resolve"),
]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the Hub: every response has a Content-Length

    def log_message(self, *args) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        self._handle()

    do_HEAD = do_POST = do_PUT = do_DELETE = do_GET

    def _read_body(self) -> bytes:
        if (self.headers.get("Transfer-Encoding") or "").lower() == "chunked":
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline().strip():  # trailers
                pass
            return b"".join(chunks)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _handle(self) -> None:
        hub: HubServer = self.server.hub
        body = self._read_body()  # always, before any error, or the kept-alive connection desyncs
        req = RecordedRequest(self.command, self.path, dict(self.headers.items()), body)
        with hub.lock:
            hub.requests.append(req)
        url = urlsplit(self.path)
        method = "GET" if self.command == "HEAD" else self.command
        try:
            for route_method, pattern, name in _ROUTES:
                match = pattern.fullmatch(url.path)
                if match and route_method == method:
                    kwargs = {k: unquote(v) for k, v in match.groupdict().items() if v is not None}
                    self._reply(*getattr(hub, name)(req, parse_qs(url.query), **kwargs))
                    return
            raise HubError(404, f"no route for {self.command} {url.path} in the stand-in Hub")
        except HubError as err:
            self._error(err)
        except (ValueError, KeyError, TypeError) as err:  # a request the stand-in cannot parse
            self._error(HubError(400, f"bad request: {err!r}"))

    def _error(self, err: HubError) -> None:
        message = " ".join(err.message.encode("ascii", "replace").decode().split())  # one header-safe line
        headers = {"X-Error-Message": message, "X-Error-Code": err.code, "X-Repo-Commit": err.commit}
        self._reply(err.status, {"error": err.message}, {k: v for k, v in headers.items() if v})

    def _reply(self, status: int, payload, headers: dict | None = None) -> None:
        headers = dict(headers or {})
        if not isinstance(payload, bytes):
            payload = json.dumps(payload).encode()
            headers.setdefault("Content-Type", "application/json")
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)


def point_clients_at(server: HubServer, hf_home: Path, token: str, monkeypatch) -> None:
    """Point this process's environment (inherited by subprocess clients) at ``server``."""
    for key, value in server.client_env(hf_home, token=token).items():
        if value is None:
            monkeypatch.delenv(key, raising=False)
        else:
            monkeypatch.setenv(key, value)


@contextlib.contextmanager
def pushes_from_this_process(server: HubServer, hf_home: Path):
    """Within it, pushes made in this process (``HfApi``: ``supclap-push``'s and ``train_supclap.py``'s
    ``main``, ``hub.push_output_folder``) go to ``server``; after :func:`point_clients_at` (the token is
    ``HF_TOKEN``, which huggingface_hub reads at each call).

    huggingface_hub reads the endpoint, offline mode and token files once, at import, into its
    ``constants``: those are patched here and restored on leaving, and its HTTP client is rebuilt on both
    sides (it keeps the proxy settings it was built with). Pushes only: downloads and ``from_pretrained``
    (transformers caches its own ``HfApi``, and puts remote code on ``sys.path``) stay in client processes."""
    import pytest
    from huggingface_hub import close_session, constants

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(constants, "ENDPOINT", server.url)
        patch.setattr(
            constants, "HUGGINGFACE_CO_URL_TEMPLATE", server.url + "/{repo_id}/resolve/{revision}/{filename}"
        )
        patch.setattr(constants, "HF_HUB_OFFLINE", False)
        patch.setattr(constants, "HF_TOKEN_PATH", str(Path(hf_home) / "token"))
        patch.setattr(constants, "HF_STORED_TOKENS_PATH", str(Path(hf_home) / "stored_tokens"))
        close_session()
        try:
            yield
        finally:
            close_session()
