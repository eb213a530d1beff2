"""The CNN benchmark on the host side: profiles, the probe run, statistics, references.

The probe (``dbc_accept/probes/cnn_bench.py``) only measures inside the guest and streams
every step's time; everything that judges those times lives here.
"""
