# -*- coding: utf-8 -*-
# Copyright: (c) 2026, Firebreak maintainers (@firebreak)
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or
# https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The diagnostic procedures' filter: a thin wrapper over module_utils/diagnostics.py.

Its documentation is in the sidecar file diagnostics_evaluate.yml beside this file.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError
from ansible_collections.firebreak.incident.plugins.module_utils import diagnostics, vsr


def _plain(value):
    """Templated containers (lazy dicts/lists in ansible-core 2.19) as plain ones."""
    if isinstance(value, dict):
        return dict((k, _plain(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def diagnostics_evaluate(hosts, names, first, second, max_lag=10, thresholds=None, at=None):
    """The five procedures judged: ``hosts`` {inventory host: host_diagnostics result}."""
    try:
        return diagnostics.evaluate(
            _plain(names),
            _plain(hosts),
            _plain(first),
            _plain(second),
            max_lag=int(max_lag),
            thresholds=_plain(thresholds),
            at=at,
        )
    except (diagnostics.DiagnosticsError, vsr.VsrInputError, ValueError, TypeError) as e:
        raise AnsibleFilterError("diagnostics_evaluate: %s" % e) from e


class FilterModule(object):
    def filters(self):
        return {"diagnostics_evaluate": diagnostics_evaluate}
