"""The test VM: domain XML, overlay volume, safety checks, lifecycle and the reaper.

libvirt-python is imported only when a function here talks to libvirt, so the plugin and
``pytest -m host`` load without it.
"""
