class UserError(Exception):
    """A problem the user can fix (bad path, bad config, too little text); the CLI prints it as one line and exits 1."""
