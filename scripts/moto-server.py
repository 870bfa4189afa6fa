"""moto's server, with DynamoDB requests handled one at a time.

DynamoDB applies each request atomically: a conditional write or a
TransactWriteItems is checked and applied as one step. moto 5.2.5's threaded
server does not: TransactWriteItems copies the tables it touches, checks,
applies and puts them back, so two concurrent transactions on one table can
both pass their conditions and the later one undo the earlier (a lost
update real DynamoDB never shows). The race tests (approve vs cancel, the
store suite's concurrent guarded writes) need DynamoDB's semantics, so
DynamoDB calls are serialised here; every other service stays threaded.

Usage: python scripts/moto-server.py -H 127.0.0.1 -p PORT (moto_server's flags).
"""

import threading

from moto import server

_dynamodb = threading.Lock()
_dispatch = server.DomainDispatcherApplication.__call__


def _serialised(self, environ, start_response):
    if environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB_"):
        with _dynamodb:
            # The body is built before the lock is released: moto answers
            # with a complete werkzeug Response.
            return list(_dispatch(self, environ, start_response))
    return _dispatch(self, environ, start_response)


server.DomainDispatcherApplication.__call__ = _serialised

if __name__ == "__main__":
    server.main()
