"""People's corrections from the draw-a-digit page: the record and the store that holds them.

``feedback.record`` is the correction record (one JSON file per image, named by the image's
digest): how it is made, written, read and checked. ``feedback.store`` is the folder that
holds the records (accepted ones at its top, ``pending/`` awaiting a person's review,
``pending/dropped/`` those a person turned down). The page's server (``demo.feedback``),
the review command (``demo.review``) and the ``feedback`` stage all go through these two
modules, so the format is written and read in one place. Nothing heavy is imported here:
the stage that uses it must start in well under a second.
"""
