# -*- coding: utf-8 -*-
# Copyright: (c) 2026, Firebreak maintainers (@firebreak)
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or
# https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # The options of module_utils/endpoints.py endpoints_argument_spec(), documented once.
    DOCUMENTATION = r"""
options:
  endpoints:
    description:
      - The HTTP endpoints to read, one per cluster member, each as V(host:port),
        V(host:port/path) or a full URL (V(http://host:port/path), V(https://...)).
      - A V(host:port) gets O(scheme) and O(metrics_path) added, so V(10.0.0.1:9090) is read
        as V(http://10.0.0.1:9090/metrics). A URL without a path gets O(metrics_path).
      - IPv6 literals go in brackets, V([::1]:9090). A port is required in the V(host:port)
        form. Credentials inside a URL are refused; use O(url_username) and O(url_password).
      - Each endpoint must appear once (after normalization).
    type: list
    elements: str
    required: true
  metrics_path:
    description:
      - The path added to an endpoint that has none.
    type: str
    default: /metrics
  scheme:
    description:
      - The scheme added to an endpoint written as V(host:port).
    type: str
    choices: [http, https]
    default: http
  timeout:
    description:
      - Seconds allowed for each endpoint in total (connect, request, headers and body).
        An endpoint that accepts the connection and never answers is given up after this.
      - Must be greater than 0. Name resolution is not covered by this bound.
    type: float
    default: 5.0
  concurrency:
    description:
      - How many endpoints are read at the same time (threads on the target).
      - Must be at least 1. At worst the whole read takes O(timeout) seconds
        for every O(concurrency) endpoints, rounded up.
    type: int
    default: 16
  validate_certs:
    description:
      - Whether to verify the server certificates of V(https) endpoints.
      - Set to V(false) only for a lab with self-signed certificates.
    type: bool
    default: true
  ca_path:
    description:
      - A PEM file of CA certificates to verify V(https) endpoints with, instead of the
        system's trust store.
    type: path
  client_cert:
    description:
      - A PEM file with the client certificate (and possibly its key) for TLS client
        authentication.
    type: path
  client_key:
    description:
      - A PEM file with the private key of O(client_cert), when it is not inside that file.
      - Requires O(client_cert).
    type: path
  url_username:
    description:
      - User name for HTTP basic authentication, sent with every request to the endpoint's
        origin (see the notes on redirects).
    type: str
  url_password:
    description:
      - Password for HTTP basic authentication. Requires O(url_username).
      - Never logged nor returned.
    type: str
  bearer_token:
    description:
      - A token sent in the header C(Authorization) as C(Bearer <token>). Mutually exclusive
        with O(url_username).
      - Never logged nor returned.
    type: str
notes:
  - Endpoints are read directly; proxy settings in the environment are ignored.
  - Up to 3 HTTP redirects are followed, within the same O(timeout). The credentials
    (O(url_password), O(bearer_token)) go only to the origin (scheme, host and port) of the
    endpoint they were given for; a redirect to another origin is followed without them.
    A redirect from V(https) to V(http) is refused (the endpoint's error says so).
"""
