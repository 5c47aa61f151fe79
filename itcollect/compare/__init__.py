"""Several systems per turn (issue 23): what a decision among candidates means
(:mod:`.outcomes`, shared by ``stats`` and ``export``) and how a compared turn is recorded
(:mod:`.record`, shared by ``simulate --compare`` and ``session --compare``)."""
