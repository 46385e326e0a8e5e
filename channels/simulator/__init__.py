"""The built-in provider simulator: local fakes of the providers' APIs, in their real formats."""
