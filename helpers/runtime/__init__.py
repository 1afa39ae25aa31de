"""The runtime: what runs on the driver and on every Ray worker.

Settings for this machine (:mod:`.settings`), shared storage on a folder or
``s3://`` (:mod:`.storage`), starting or joining Ray (:mod:`.cluster`), the
fail-fast resource check (:mod:`.resources`, its packing search in
:mod:`.packing`, the ``WORKSHOP_*`` pool sizes in :mod:`.settings_fit`), the
notebook progress line (:mod:`.progress`), writes that keep the previous output
(:mod:`.overwrite`), and the one door to Ray's private APIs (:mod:`.ray_internals`).
"""
