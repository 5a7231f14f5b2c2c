# -*- coding: utf-8 -*-
# Copyright: (c) 2026, Firebreak maintainers (@firebreak)
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or
# https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""VSR filters: thin wrappers over module_utils/vsr.py, module_utils/guard.py and
module_utils/prometheus_text.py.

Their documentation is in the sidecar files vsr_leader.yml, quorum_size.yml, vsr_classify.yml,
quorum_decision.yml and prometheus_samples.yml beside this file.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError
from ansible_collections.firebreak.incident.plugins.module_utils import (
    guard,
    prometheus_text,
    vsr,
)


def vsr_leader(view, replica_order):
    """The leader of ``view``: ``replica_order[view % len(replica_order)]``."""
    try:
        return vsr.vsr_leader(view, replica_order)
    except vsr.VsrInputError as e:
        raise AnsibleFilterError("vsr_leader: %s" % e) from e


def quorum_size(n):
    """Votes needed among ``n`` replicas: ``n // 2 + 1``."""
    try:
        return vsr.quorum_size(n)
    except vsr.VsrInputError as e:
        raise AnsibleFilterError("quorum_size: %s" % e) from e


def vsr_classify(data, previous=None, disk=None, **thresholds):
    """The failure modes FM-001..FM-008 found in a vsr_metrics result."""
    try:
        return vsr.classify(
            _plain(data), previous=_plain(previous), disk=_plain(disk), **thresholds
        )
    except vsr.VsrInputError as e:
        raise AnsibleFilterError("vsr_classify: %s" % e) from e


def quorum_decision(
    metrics, hosts, out_of_service, max_lag=10, action="remediation", override=None
):
    """The quorum guard's decision on taking ``out_of_service`` out of service."""
    try:
        return guard.quorum_decision(
            _plain(metrics),
            _plain(hosts),
            _plain(out_of_service),
            max_lag=max_lag,
            action=action,
            override=_plain(override),
        )
    except vsr.VsrInputError as e:
        raise AnsibleFilterError("quorum_decision: %s" % e) from e


def prometheus_samples(text):
    """Exposition text -> [{name, labels, value, timestamp}]."""
    if not isinstance(text, str):
        raise AnsibleFilterError(
            "prometheus_samples: the input must be exposition text (a "
            "string), got %s" % type(text).__name__
        )
    try:
        return [prometheus_text.sample_to_dict(s) for s in prometheus_text.parse_samples(text)]
    except prometheus_text.PrometheusTextError as e:
        raise AnsibleFilterError("prometheus_samples: malformed exposition, %s" % e) from e


def _plain(value):
    """Templated containers (lazy dicts/lists in ansible-core 2.19) as plain ones."""
    if isinstance(value, dict):
        return dict((k, _plain(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


class FilterModule(object):
    def filters(self):
        return {
            "vsr_leader": vsr_leader,
            "quorum_size": quorum_size,
            "vsr_classify": vsr_classify,
            "quorum_decision": quorum_decision,
            "prometheus_samples": prometheus_samples,
        }
