#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""rst-to-man.py IN.rst OUT NAME SECTION "ONE-LINE DESCRIPTION"

A man page from one of the project's QEMU-style documents (docs/tools/),
with docutils' manpage writer (Debian's python3-docutils).  The documents
use the Sphinx markup of QEMU's manual (".. program::", ".. option::",
":program:", ":option:"), which plain docutils does not know: here an
option becomes a bold term with its description indented under it, the
roles become bold text.  The document's own title is replaced by the man
page's NAME line; its sections become the page's sections.
"""

import sys

from docutils import nodes
from docutils.core import publish_string
from docutils.parsers.rst import Directive, directives, roles


class ProgramDirective(Directive):
    """'.. program:: NAME' only sets the context of later options"""
    required_arguments = 1
    final_argument_whitespace = True

    def run(self):
        return []


class OptionDirective(Directive):
    """'.. option:: -S PATH, --socket=PATH' + indented description"""
    required_arguments = 1
    final_argument_whitespace = True
    has_content = True

    def run(self):
        term = nodes.term()
        term += nodes.strong(text=self.arguments[0])
        definition = nodes.definition()
        self.state.nested_parse(self.content, self.content_offset,
                                definition)
        item = nodes.definition_list_item()
        item += term
        item += definition
        return [nodes.definition_list("", item)]


def bold_role(name, rawtext, text, lineno, inliner, options=None,
              content=None):
    return [nodes.strong(text=text)], []


def main():
    if len(sys.argv) != 6:
        sys.exit(__doc__.splitlines()[0])
    src, out, name, section, desc = sys.argv[1:]
    directives.register_directive("program", ProgramDirective)
    directives.register_directive("option", OptionDirective)
    roles.register_local_role("program", bold_role)
    roles.register_local_role("option", bold_role)

    with open(src) as f:
        lines = f.read().splitlines()
    # Drop the document title (overline, title, underline).
    if len(lines) > 2 and set(lines[0]) == {"="} and set(lines[2]) == {"="}:
        lines = lines[3:]
    bar = "=" * len(name)
    sub = "-" * len(desc)
    head = [bar, name, bar, "", sub, desc, sub, "",
            f":Manual section: {section}", ":Manual group: ivsh", ""]
    page = publish_string("\n".join(head + lines) + "\n",
                          writer_name="manpage",
                          settings_overrides={"report_level": 2,
                                              "halt_level": 2,
                                              "input_encoding": "utf-8",
                                              "output_encoding": "utf-8"})
    with open(out, "wb") as f:
        f.write(page)


if __name__ == "__main__":
    main()
