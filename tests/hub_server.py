"""A local HTTP server speaking the few Hugging Face Hub endpoints `create_repo` and `upload_folder` use, so the
upload runs through huggingface_hub's real client code (HF_ENDPOINT pointed here) with no network.

Endpoints (as huggingface_hub 2.x calls them): POST /api/repos/create; POST /api/validate-yaml (the card); GET /api/{type}s/{repo}/tree/{rev};
GET /api/{type}s/{repo}/revision/{rev}; POST /api/{type}s/{repo}/preupload/{rev} (every file "regular", so
contents travel inline and no LFS/Xet storage is involved); POST /api/{type}s/{repo}/commit/{rev} (ndjson:
header, file, deletedFile). Each repository is a dict path -> bytes; every request's Authorization header is
recorded so a test can check which token was sent.
"""
from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse


def git_blob_oid(content: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


class Hub:
    def __init__(self):
        self.repos: dict[str, dict] = {}    # "dataset:owner/name" -> {"private", "files": {path: bytes}, "commits"}
        self.auth: list[str | None] = []
        self.requests: list[tuple[str, str]] = []
        self.validated: list[str] = []     # README contents sent to /api/validate-yaml
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def _handler(self):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _reply(self, status: int, body, headers: dict | None = None):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def _body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length", 0)))

            def _route(self, method: str):
                hub.auth.append(self.headers.get("Authorization"))
                path = urlparse(self.path).path
                hub.requests.append((method, path))
                if method == "POST" and path == "/api/repos/create":
                    req = json.loads(self._body())
                    key = f"{req.get('type', 'model')}:{req['organization']}/{req['name']}"
                    url = f"{hub.url}/datasets/{req['organization']}/{req['name']}"
                    if key in hub.repos:
                        return self._reply(409, {"error": "You already created this repo", "url": url})
                    hub.repos[key] = {"private": req.get("visibility") == "private" or req.get("private") is True,
                                      "files": {".gitattributes": b"*.parquet filter=lfs diff=lfs merge=lfs -text\n"},
                                      "commits": []}
                    return self._reply(200, {"url": url})
                if method == "POST" and path == "/api/validate-yaml":
                    return self._validate(json.loads(self._body()))
                m = re.fullmatch(r"/api/(\w+)s/([^/]+/[^/]+)/(tree|revision|preupload|commit)/([^/]+)(/.*)?", path)
                if not m:
                    return self._reply(404, {"error": f"no route {method} {path}"})
                kind, repo_id, verb = m.group(1), m.group(2), m.group(3)
                repo = hub.repos.get(f"{kind}:{repo_id}")
                if repo is None:
                    return self._reply(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
                files = repo["files"]
                if verb == "tree":
                    return self._reply(200, [{"type": "file", "path": p, "oid": git_blob_oid(b), "size": len(b)}
                                             for p, b in sorted(files.items())])
                if verb == "revision":
                    return self._reply(200, {"id": repo_id, "sha": hub.head(repo), "private": repo["private"],
                                             "siblings": [{"rfilename": p} for p in sorted(files)]})
                if verb == "preupload":
                    req = json.loads(self._body())
                    return self._reply(200, {"files": [
                        {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False,
                         "oid": git_blob_oid(files[f["path"]]) if f["path"] in files else None}
                        for f in req["files"]]})
                # commit: apply the ndjson operations in order
                ops = [json.loads(line) for line in self._body().splitlines() if line.strip()]
                for op in ops:
                    v = op["value"]
                    if op["key"] == "file":
                        files[v["path"]] = base64.b64decode(v["content"])
                    elif op["key"] == "deletedFile":
                        files.pop(v["path"], None)
                    elif op["key"] == "deletedFolder":
                        for p in [p for p in files if p.startswith(v["path"].rstrip("/") + "/")]:
                            del files[p]
                    elif op["key"] != "header":
                        return self._reply(400, {"error": f"unsupported operation {op['key']}"})
                repo["commits"].append([op["key"] for op in ops])
                oid = hub.head(repo)
                return self._reply(200, {"commitUrl": f"{hub.url}/datasets/{repo_id}/commit/{oid}", "commitOid": oid,
                                         "pullRequestUrl": None})

            def _validate(self, req: dict):
                """The card's YAML metadata: parseable, and every config names its data files."""
                import yaml

                hub.validated.append(req["content"])
                errors = []
                try:
                    meta = yaml.safe_load(req["content"].split("---")[1])
                    for c in meta.get("configs", []):
                        if not c.get("config_name") or not c.get("data_files"):
                            errors.append({"message": f"config {c} lacks config_name or data_files"})
                except Exception as e:  # noqa: BLE001 - any parse failure is the client's error
                    errors.append({"message": f"unparseable metadata: {e}"})
                return self._reply(400 if errors else 200, {"errors": errors, "warnings": []})

            def do_GET(self):
                self._route("GET")

            def do_POST(self):
                self._route("POST")

        return Handler

    @staticmethod
    def head(repo: dict) -> str:
        return hashlib.sha1(json.dumps({p: git_blob_oid(b) for p, b in sorted(repo["files"].items())}).encode()
                            ).hexdigest()
