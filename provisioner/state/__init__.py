"""What Phoenix records on the workspace: the state file, the lock file, the volume lock."""
