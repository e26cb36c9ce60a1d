"""One process's HTTP: the one session, one URL's attempts, redirects followed hop by hop,
ranges, proxies and credentials, TLS, and the one table of exceptions to failures."""
