# -*- coding: utf-8 -*-
# Copyright: (c) 2025, Firebreak maintainers (@firebreak)
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # Connection options shared by the collection's PostgreSQL modules
    # (plugins/module_utils/postgres.py: postgres_common_argument_spec).
    DOCUMENTATION = r"""
options:
  login_user:
    description:
      - The role this module logs in as.
      - Defaults to the E(PGUSER) environment variable of the target when it is set.
    type: str
    default: postgres
  login_password:
    description:
      - The password of O(login_user). Never logged nor returned.
    type: str
    default: ''
  login_host:
    description:
      - Host running the database.
      - When empty (or C(localhost)) and O(login_unix_socket) is set, the unix socket is used.
    type: str
    default: ''
  login_port:
    description:
      - Database port to connect to (also names the socket file in O(login_unix_socket)).
      - Defaults to the E(PGPORT) environment variable of the target when it is set.
    type: int
    default: 5432
  login_unix_socket:
    description:
      - Directory holding the server's unix domain socket, for local connections.
    type: str
    default: ''
  login_db:
    description:
      - Database to connect to. Sessions of every database are seen from any of them.
    type: str
    default: postgres
    aliases: [ db ]
  ssl_mode:
    description:
      - Whether, or with what priority, a TLS connection is negotiated with the server.
      - See U(https://www.postgresql.org/docs/current/libpq-ssl.html) for the modes.
    type: str
    default: prefer
    choices: [ allow, disable, prefer, require, verify-ca, verify-full ]
  ca_cert:
    description:
      - File with the certificate authority certificate(s) the server's certificate must be
        signed by (libpq C(sslrootcert)).
    type: path
    aliases: [ ssl_rootcert ]
  connect_timeout:
    description:
      - Seconds to wait for the connection to be established and the login to complete.
        Must be 1 or more.
    type: int
    default: 10
  statement_timeout:
    description:
      - Seconds any statement may run, set on the session (C(statement_timeout)) right after
        the login. The server cancels a statement that takes longer, for example one waiting
        on a lock. Must be 1 or more.
      - It bounds reads too. When the server has not answered a statement after
        O(statement_timeout) + 2 seconds (a server that accepted the connection and then went
        silent), the module gives up and fails with a message naming the server.
    type: int
    default: 30
notes:
  - Uses L(psycopg,https://www.psycopg.org/psycopg3/) 3 on the host the module runs on.
requirements:
  - psycopg >= 3.1
"""
