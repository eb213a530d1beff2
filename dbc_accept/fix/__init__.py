"""`dbc-accept fix`: the FAILs (and WARNs) of a host run turned into one shell script.

:mod:`~dbc_accept.fix.actions` holds the structured remedies that
:mod:`dbc_accept.remedies` attaches to the check ids, :mod:`~dbc_accept.fix.resolve`
turns them into steps with this node's values (its GPU ids, its CPU vendor, its missing
packages), :mod:`~dbc_accept.fix.script` writes the script and
:mod:`~dbc_accept.fix.command` is the command line. See docs/fix.md.
"""
