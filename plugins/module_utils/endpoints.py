# -*- coding: utf-8 -*-
# Copyright: (c) 2026, Firebreak maintainers (@firebreak)
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or
# https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Concurrent, bounded HTTP GETs of a list of cluster endpoints (standard library only).

Shared by the modules that read a cluster over HTTP (``vsr_metrics``, ``raft_status``).
The option set is declared once here and documented once in the doc fragment
``firebreak.incident.endpoints``; a module uses it like this::

    from ansible_collections.firebreak.incident.plugins.module_utils.endpoints import (
        EndpointError, FetchOptions, endpoints_argument_spec, fetch_endpoints)

    argument_spec = endpoints_argument_spec()          # endpoints, metrics_path, scheme,
    argument_spec.update(my_option=dict(type='str'))   # timeout, concurrency, TLS and auth
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    try:
        options = FetchOptions.from_params(module.params)
        results = fetch_endpoints(module.params['endpoints'], options,
                                  path=module.params['metrics_path'],
                                  scheme=module.params['scheme'])
    except EndpointError as e:
        module.fail_json(msg=str(e), option=e.option)   # the message names option and value

``fetch_endpoints`` never raises for a network failure: every endpoint yields one
``FetchResult`` (``ok``, ``error``, ``status``, ``body``...), in the order given. It raises
``EndpointError`` only for invalid input (a bad URL, a negative timeout...), before any request.

Time bound: each endpoint gets ``timeout`` seconds in total, for connect, request, headers
and body together (the socket timeout is re-armed with what is left before every read), so an
endpoint that accepts and never answers, or answers a byte at a time, is abandoned on time.
Name resolution is the one step that the socket timeout does not bound. Proxies from the
environment are not used: endpoints are cluster members, reached directly.

Redirects (see ``follow_redirect``): the Authorization header (basic or bearer) goes only to
the origin (scheme, host, port) of the URL it was given for; a redirect elsewhere is followed
without it. A redirect from https to http is refused, credentials or not.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import json
import math
import re
import socket
import ssl
import time
from concurrent.futures import ThreadPoolExecutor

from ansible.module_utils.six.moves import http_client
from ansible.module_utils.six.moves.urllib.parse import urljoin, urlsplit, urlunsplit

DEFAULT_PATH = "/metrics"
DEFAULT_TIMEOUT = 5.0
DEFAULT_CONCURRENCY = 16
# An exposition of a few thousand series is well under 1 MiB; 32 MiB stops a runaway answer.
DEFAULT_MAX_BYTES = 32 * 1024 * 1024
MAX_REDIRECTS = 3
DEFAULT_PORTS = {"http": 80, "https": 443}
USER_AGENT = "firebreak.incident (ansible module)"
ACCEPT = "text/plain;version=0.0.4;q=0.9,*/*;q=0.1"

_HOSTNAME_RE = re.compile(r"^[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?$")
_HOST_PORT_RE = re.compile(
    r"^(?P<host>\[[0-9A-Fa-f:.]+\]|[^\s:/\[\]@]+)(?::(?P<port>[^/]*))?(?P<path>/.*)?$"
)


class EndpointError(ValueError):
    """Invalid input for an endpoint option. ``option`` names it; the message shows the value."""

    def __init__(self, message, option=None, value=None):
        super(EndpointError, self).__init__(message)
        self.option = option
        self.value = value


class FetchResult(object):
    """What one GET returned. ``ok`` is True only for an HTTP 2xx answer whose body was read.

    Attributes: ``endpoint`` (as the user wrote it), ``url`` (normalized, without credentials),
    ``ok``, ``status`` (HTTP code or None), ``reason``, ``content_type``, ``body`` (text, or
    None), ``error`` (one line, or None), ``elapsed`` (seconds), ``index`` (position in the
    list fetched, or None).
    """

    __slots__ = (
        "body",
        "content_type",
        "elapsed",
        "endpoint",
        "error",
        "index",
        "ok",
        "reason",
        "status",
        "url",
    )

    def __init__(
        self,
        endpoint,
        url,
        ok=False,
        status=None,
        reason=None,
        content_type=None,
        body=None,
        error=None,
        elapsed=0.0,
    ):
        self.endpoint = endpoint
        self.url = url
        self.ok = ok
        self.status = status
        self.reason = reason
        self.content_type = content_type
        self.body = body
        self.error = error
        self.elapsed = elapsed
        self.index = None

    def to_dict(self, with_body=False):
        """A JSON-ready dict (the body only when asked: it can be large)."""
        result = dict((name, getattr(self, name)) for name in self.__slots__ if name != "body")
        result["elapsed"] = round(self.elapsed, 4)
        if with_body:
            result["body"] = self.body
        return result

    def __repr__(self):
        return "FetchResult(%r, ok=%r, status=%r, error=%r)" % (
            self.url,
            self.ok,
            self.status,
            self.error,
        )


def endpoints_argument_spec(default_path=DEFAULT_PATH):
    """The shared options, as an AnsibleModule argument_spec dict (a fresh copy per call).

    Documented by the doc fragment ``firebreak.incident.endpoints``; a module that changes
    ``default_path`` must document the new default of O(metrics_path) in its own DOCUMENTATION.
    """
    return dict(
        endpoints=dict(type="list", elements="str", required=True),
        metrics_path=dict(type="str", default=default_path),
        scheme=dict(type="str", default="http", choices=["http", "https"]),
        timeout=dict(type="float", default=DEFAULT_TIMEOUT),
        concurrency=dict(type="int", default=DEFAULT_CONCURRENCY),
        validate_certs=dict(type="bool", default=True),
        ca_path=dict(type="path"),
        client_cert=dict(type="path"),
        client_key=dict(type="path", no_log=False),
        url_username=dict(type="str"),
        url_password=dict(type="str", no_log=True),
        bearer_token=dict(type="str", no_log=True),
    )


class FetchOptions(object):
    """Validated fetch settings; build it with ``FetchOptions.from_params(module.params)``."""

    def __init__(
        self,
        timeout=DEFAULT_TIMEOUT,
        concurrency=DEFAULT_CONCURRENCY,
        validate_certs=True,
        ca_path=None,
        client_cert=None,
        client_key=None,
        url_username=None,
        url_password=None,
        bearer_token=None,
        max_bytes=DEFAULT_MAX_BYTES,
    ):
        timeout = _number("timeout", timeout)
        if math.isnan(timeout) or timeout <= 0 or math.isinf(timeout):
            raise EndpointError(
                "timeout must be a number of seconds greater than 0, got %r" % (timeout,),
                "timeout",
                timeout,
            )
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise EndpointError(
                "concurrency must be an integer of at least 1, got %r" % (concurrency,),
                "concurrency",
                concurrency,
            )
        if client_key and not client_cert:
            raise EndpointError(
                "client_key is set but client_cert is not: set both, or put "
                "the key in the client_cert file",
                "client_key",
                client_key,
            )
        if url_password is not None and not url_username:
            raise EndpointError("url_password is set but url_username is not", "url_username", None)
        if bearer_token and url_username:
            raise EndpointError(
                "url_username and bearer_token are mutually exclusive: one "
                "Authorization header per request",
                "bearer_token",
                None,
            )
        self.timeout = float(timeout)
        self.concurrency = concurrency
        self.validate_certs = bool(validate_certs)
        self.ca_path = ca_path
        self.client_cert = client_cert
        self.client_key = client_key
        self.url_username = url_username
        self.url_password = url_password
        self.bearer_token = bearer_token
        self.max_bytes = max_bytes
        self._ssl_context = None

    @classmethod
    def from_params(cls, params):
        """Build from AnsibleModule params (keys of ``endpoints_argument_spec``)."""
        return cls(
            timeout=params.get("timeout", DEFAULT_TIMEOUT),
            concurrency=params.get("concurrency", DEFAULT_CONCURRENCY),
            validate_certs=params.get("validate_certs", True),
            ca_path=params.get("ca_path"),
            client_cert=params.get("client_cert"),
            client_key=params.get("client_key"),
            url_username=params.get("url_username"),
            url_password=params.get("url_password"),
            bearer_token=params.get("bearer_token"),
        )

    def headers(self, credentials=True):
        """The request headers; the Authorization header only with ``credentials``."""
        headers = {"User-Agent": USER_AGENT, "Accept": ACCEPT, "Connection": "close"}
        if not credentials:
            return headers
        if self.url_username:
            raw = "%s:%s" % (self.url_username, self.url_password or "")
            headers["Authorization"] = "Basic " + base64.b64encode(raw.encode("utf-8")).decode(
                "ascii"
            )
        elif self.bearer_token:
            headers["Authorization"] = "Bearer " + self.bearer_token
        return headers

    def ssl_context(self):
        """One TLS context for all endpoints; EndpointError if a certificate file is unusable."""
        if self._ssl_context is None:
            try:
                context = ssl.create_default_context(cafile=self.ca_path)
                if not self.validate_certs:
                    context.check_hostname = False
                    context.verify_mode = ssl.CERT_NONE
                if self.client_cert:
                    context.load_cert_chain(self.client_cert, self.client_key)
            except (IOError, OSError, ssl.SSLError) as e:
                option = "client_cert" if self.client_cert else "ca_path"
                raise EndpointError(
                    "cannot load the TLS files (ca_path=%r, client_cert=%r, "
                    "client_key=%r): %s" % (self.ca_path, self.client_cert, self.client_key, e),
                    option,
                    None,
                ) from e
            self._ssl_context = context
        return self._ssl_context


def _number(option, value):
    if isinstance(value, bool):
        raise EndpointError("%s must be a number, got %r" % (option, value), option, value)
    try:
        return float(value)
    except (TypeError, ValueError):
        raise EndpointError(
            "%s must be a number, got %r" % (option, value), option, value
        ) from None


def _redact(url):
    """The URL with any password replaced, for messages."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(":" + parts.password + "@", ":********@", 1)
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def normalize_endpoint(endpoint, path=DEFAULT_PATH, scheme="http"):
    """Turn ``host:port``, ``host:port/path`` or a URL into the URL to GET.

    ``10.0.0.1:9090`` -> ``http://10.0.0.1:9090/metrics`` (``scheme`` and ``path`` fill in
    what is missing); ``https://h:9443`` -> ``https://h:9443/metrics``; a URL with a path keeps
    it. IPv6 literals go in brackets (``[::1]:9090``). A port is required for ``host:port``
    (no guessing); credentials in the URL are refused (use url_username/url_password).
    Raises EndpointError naming the endpoint.
    """
    if not isinstance(endpoint, str):
        raise EndpointError(
            "endpoints: each item must be a string (host:port or URL), got %r "
            "(%s)" % (endpoint, type(endpoint).__name__),
            "endpoints",
            endpoint,
        )
    text = endpoint.strip()
    if not text or any(c.isspace() for c in text):
        raise EndpointError(
            "endpoints: %r is not host:port or a URL (empty or contains whitespace)" % (endpoint,),
            "endpoints",
            endpoint,
        )
    if not isinstance(path, str) or not path.startswith("/"):
        raise EndpointError(
            'metrics_path must start with "/", got %r' % (path,), "metrics_path", path
        )
    if "://" in text:
        try:
            parts = urlsplit(text)
            port = parts.port
        except ValueError as e:
            raise EndpointError(
                "endpoints: %r is not a valid URL: %s" % (_redact(text), e),
                "endpoints",
                _redact(text),
            ) from None
        if parts.scheme not in ("http", "https"):
            raise EndpointError(
                "endpoints: %r: scheme must be http or https, got %r"
                % (_redact(text), parts.scheme),
                "endpoints",
                _redact(text),
            )
        if parts.username is not None or parts.password is not None:
            raise EndpointError(
                "endpoints: %r carries credentials in the URL; use url_username "
                "and url_password instead" % (_redact(text),),
                "endpoints",
                _redact(text),
            )
        host = parts.hostname
        if not host:
            raise EndpointError("endpoints: %r has no host" % (text,), "endpoints", text)
        _check_host(text, host)
        if port == 0:
            raise EndpointError("endpoints: %r: port must be 1-65535" % (text,), "endpoints", text)
        return urlunsplit((parts.scheme, parts.netloc, parts.path or path, parts.query, ""))
    match = _HOST_PORT_RE.match(text)
    if not match:
        raise EndpointError("endpoints: %r is not host:port or a URL" % (text,), "endpoints", text)
    host, port, own_path = match.group("host"), match.group("port"), match.group("path")
    if port is None:
        raise EndpointError(
            "endpoints: %r has no port; write host:port (the seed uses 9090 "
            "for metrics) or a full URL" % (text,),
            "endpoints",
            text,
        )
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise EndpointError(
            "endpoints: %r: port must be 1-65535, got %r" % (text, port), "endpoints", text
        )
    _check_host(text, host.strip("[]"))
    return "%s://%s:%d%s" % (scheme, host, int(port), own_path or path)


def _check_host(text, host):
    if ":" in host:  # IPv6 literal: let the socket layer judge the digits
        return
    if not _HOSTNAME_RE.match(host) or ".." in host:
        raise EndpointError(
            "endpoints: %r: %r is not a valid host name or address" % (text, host),
            "endpoints",
            text,
        )


def normalize_endpoints(endpoints, path=DEFAULT_PATH, scheme="http"):
    """``normalize_endpoint`` over a list; refuses an empty list and the same URL twice."""
    if isinstance(endpoints, str) or not isinstance(endpoints, (list, tuple)):
        raise EndpointError(
            "endpoints must be a list of host:port or URLs, got %r" % (endpoints,),
            "endpoints",
            endpoints,
        )
    if not endpoints:
        raise EndpointError(
            "endpoints is empty: give at least one host:port or URL", "endpoints", endpoints
        )
    urls = []
    seen = {}
    for endpoint in endpoints:
        url = normalize_endpoint(endpoint, path=path, scheme=scheme)
        if url in seen:
            raise EndpointError(
                "endpoints: %r and %r are the same URL %s; list each endpoint "
                "once" % (seen[url], endpoint, url),
                "endpoints",
                endpoint,
            )
        seen[url] = endpoint
        urls.append(url)
    return urls


class _Deadline(object):
    def __init__(self, seconds):
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    def remaining(self, phase):
        left = self.end - time.monotonic()
        if left <= 0:
            raise socket.timeout("timed out after %.3g s (%s)" % (self.seconds, phase))
        return left


def fetch_url(url, options, endpoint=None, method="GET", json_body=None):
    """GET (or, with ``method="POST"`` and ``json_body``, POST a JSON document to) one URL
    within ``options.timeout`` seconds in total; never raises, returns a FetchResult.
    Follows up to 3 redirects within the same time budget, credentials only on the URL's own
    origin (see ``follow_redirect``). A non-2xx answer keeps its body in the result, for
    callers that read error documents."""
    result = FetchResult(endpoint if endpoint is not None else url, url)
    started = time.monotonic()
    deadline = _Deadline(options.timeout)
    phase = "connect"
    try:
        target, credentials = url, True
        for _hop in range(MAX_REDIRECTS + 1):
            phase = "connect"
            status, reason, headers, body, phase = _request_once(
                target, options, deadline, method, json_body, credentials
            )
            if status in (301, 302, 303, 307, 308) and headers.get("location"):
                target, credentials = follow_redirect(url, target, headers["location"])
                continue
            break
        else:
            raise _FetchFailed("more than %d redirects" % MAX_REDIRECTS)
        result.status, result.reason = status, reason
        result.content_type = headers.get("content-type")
        if not 200 <= status < 300:
            result.body = body.decode("utf-8", "replace")
            raise _FetchFailed("HTTP %d %s" % (status, reason or ""))
        try:
            result.body = body.decode(_charset(result.content_type))
        except (UnicodeDecodeError, LookupError):
            raise _FetchFailed(
                "the answer is not %s text (content-type %s)"
                % (_charset(result.content_type), result.content_type)
            ) from None
        result.ok = True
    except _FetchFailed as e:
        result.error = str(e).strip()
    except socket.timeout as e:
        message = str(e)
        if not message.startswith("timed out after"):
            message = "timed out after %.3g s (%s)" % (options.timeout, phase)
        result.error = message
    except ssl.SSLError as e:
        result.error = "TLS error: %s" % (getattr(e, "reason", None) or e,)
    except ssl.CertificateError as e:
        result.error = "TLS certificate error: %s" % (e,)
    except ConnectionRefusedError:
        result.error = "connection refused"
    except socket.gaierror as e:
        result.error = "cannot resolve host: %s" % (e.strerror or e,)
    except http_client.HTTPException as e:
        result.error = "not an HTTP answer (%s: %s)" % (type(e).__name__, e)
    except (IOError, OSError) as e:
        result.error = "%s: %s" % (type(e).__name__, getattr(e, "strerror", None) or e)
    except EndpointError as e:
        result.error = str(e)
    result.elapsed = time.monotonic() - started
    return result


class _FetchFailed(Exception):
    pass


def _origin(url):
    parts = urlsplit(url)
    return (parts.scheme, (parts.hostname or "").lower(), parts.port or DEFAULT_PORTS[parts.scheme])


def follow_redirect(first, current, location):
    """``(next URL, send credentials)`` for a redirect from ``current`` to ``location``,
    ``first`` being the URL the credentials were given for. They go only to its origin (same
    scheme, host and port); anywhere else the request goes without them. Raises _FetchFailed
    for a target that is not http(s), is not a URL, or goes from https to http (a downgrade:
    refused, credentials or not)."""
    try:
        target = urljoin(current, location)
        scheme = urlsplit(target).scheme
        if scheme not in DEFAULT_PORTS:
            raise _FetchFailed("redirected to %r, which is not http(s)" % (_redact(target),))
        if urlsplit(current).scheme == "https" and scheme == "http":
            raise _FetchFailed(
                "refused: a redirect from https to http (to %s)" % (_redact(target),)
            )
        return target, _origin(target) == _origin(first)
    except ValueError as e:
        message = "redirected to %r, not a valid URL: %s" % (_redact(location), e)
        raise _FetchFailed(message) from None


def _charset(content_type):
    if content_type:
        for part in content_type.split(";")[1:]:
            key, _sep, value = part.strip().partition("=")
            if key.strip().lower() == "charset" and value.strip():
                return value.strip().strip('"')
    return "utf-8"


def _request_once(url, options, deadline, method="GET", json_body=None, credentials=True):
    parts = urlsplit(url)
    host = parts.hostname
    if parts.scheme == "https":
        port = parts.port or DEFAULT_PORTS["https"]
        conn = http_client.HTTPSConnection(
            host, port, timeout=deadline.remaining("connect"), context=options.ssl_context()
        )
    else:
        port = parts.port or DEFAULT_PORTS["http"]
        conn = http_client.HTTPConnection(host, port, timeout=deadline.remaining("connect"))
    phase = "connect"
    try:
        conn.connect()
        sock = conn.sock
        phase = "waiting for the answer"
        sock.settimeout(deadline.remaining(phase))
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        payload = None if json_body is None else json.dumps(json_body).encode("utf-8")
        conn.putrequest(method, target, skip_accept_encoding=True)
        for name, value in options.headers(credentials).items():
            conn.putheader(name, value)
        if payload is not None:
            conn.putheader("Content-Type", "application/json")
            conn.putheader("Content-Length", str(len(payload)))
        conn.endheaders(payload)
        response = conn.getresponse()
        headers = dict((k.lower(), v) for k, v in response.getheaders())
        phase = "reading the body"
        chunks = []
        size = 0
        read = getattr(response, "read1", response.read)
        while True:
            sock.settimeout(deadline.remaining(phase))
            chunk = read(65536)
            if not chunk:
                break
            size += len(chunk)
            if size > options.max_bytes:
                raise _FetchFailed("the answer is larger than %d bytes" % options.max_bytes)
            chunks.append(chunk)
        response.close()
        return response.status, response.reason, headers, b"".join(chunks), phase
    except socket.timeout:
        raise socket.timeout("timed out after %.3g s (%s)" % (deadline.seconds, phase)) from None
    finally:
        conn.close()


def fetch_all(urls, options, endpoints=None, process=None):
    """GET every URL concurrently (at most ``options.concurrency`` at once); a FetchResult per
    URL, in the order given. ``endpoints`` (same length) is what the user wrote, for results.

    ``process``, when given, is called with each FetchResult in the worker thread as soon as
    that fetch ends (so that parsing one answer overlaps with waiting for the others); the
    list returned then holds what it returned instead. It must not raise.
    """
    if endpoints is None:
        endpoints = list(urls)
    if not urls:
        return []
    if any(u.startswith("https:") for u in urls):
        options.ssl_context()  # a bad certificate file fails once, as EndpointError

    def one(job):
        index, url, endpoint = job
        result = fetch_url(url, options, endpoint)
        result.index = index
        return process(result) if process is not None else result

    jobs = [(i, u, e) for i, (u, e) in enumerate(zip(urls, endpoints))]
    workers = min(options.concurrency, len(urls))
    if workers == 1:
        return [one(job) for job in jobs]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, jobs))


def fetch_endpoints(endpoints, options, path=DEFAULT_PATH, scheme="http", process=None):
    """Normalize ``endpoints`` (EndpointError on bad input, before any request), then
    ``fetch_all``. The usual entry point for a module."""
    urls = normalize_endpoints(endpoints, path=path, scheme=scheme)
    return fetch_all(urls, options, endpoints=list(endpoints), process=process)


def looks_like_html(result):
    """True when an answer is an HTML page (a login page, a proxy error, a wrong path)."""
    content_type = (result.content_type or "").split(";")[0].strip().lower()
    if content_type in ("text/html", "application/xhtml+xml"):
        return True
    head = (result.body or "")[:512].lstrip().lower()
    return head.startswith("<!doctype html") or head.startswith("<html")
