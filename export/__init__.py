"""export: trained CLLNN -> deployable files, and the ``cllnn-export`` command line."""
