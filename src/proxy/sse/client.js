// The client library comes with the browser side of the fallback.
