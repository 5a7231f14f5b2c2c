# -*- coding: utf-8 -*-
# Copyright: (c) 2026, Firebreak maintainers (@firebreak)
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or
# https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The lookup firebreak.incident.state_dir (documented below)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


DOCUMENTATION = r"""
name: state_dir
author: Firebreak maintainers (@firebreak)
short_description: Where firebreak keeps incident records, evidence and labs on the controller
description:
  - Returns the controller's firebreak state directory, or paths below it, so that records,
    evidence and labs never land inside a playbook or collection source tree.
  - The state directory is E(FIREBREAK_STATE_DIR), else E(XDG_STATE_HOME)/firebreak, else
    C(~/.local/state/firebreak), the same rule as the C(firebreak) wrapper.
  - Nothing is created here; the roles that write there create what they need (and nothing in
    check mode).
options:
  _terms:
    description:
      - Paths below the state directory (for example C(incidents)).
      - Without terms, the state directory itself.
    type: list
    elements: str
    required: false
"""

EXAMPLES = r"""
- name: Where the incident records go
  ansible.builtin.debug:
    msg: "{{ lookup('firebreak.incident.state_dir', 'incidents') }}"
"""

RETURN = r"""
_raw:
  description: One absolute path per term (the state directory itself without terms).
  type: list
  elements: str
"""

import os  # noqa: E402

from ansible.errors import AnsibleError  # noqa: E402
from ansible.plugins.lookup import LookupBase  # noqa: E402


def state_dir(environ=None):
    """The state directory, by the rule of the DOCUMENTATION above."""
    env = os.environ if environ is None else environ
    if env.get("FIREBREAK_STATE_DIR"):
        return env["FIREBREAK_STATE_DIR"]
    base = env.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "firebreak")


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        self.set_options(var_options=variables, direct=kwargs)
        root = state_dir()
        if not terms:
            return [root]
        out = []
        for term in terms:
            if not isinstance(term, str) or os.path.isabs(term) or ".." in term.split("/"):
                raise AnsibleError("state_dir: %r is not a relative path below it" % (term,))
            out.append(os.path.join(root, term))
        return out
