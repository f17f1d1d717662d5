"""Logging, set up in one place with one format. Access lines, one per request, skip logging's records and go
straight to a buffered stream (their cost is measured in docs/benchmarks.md)."""
import logging
import sys
import threading
import time

FORMAT = '%(asctime)s %(levelname)s %(name)s: %(message)s'
log = logging.getLogger('moviesapi')
buffered = None  # the handler setup() installs; until then (in tests) access lines are ordinary records


def setup():
    """Log INFO and above to stderr through one buffered handler."""
    global buffered
    stream = open(sys.stderr.fileno(), 'w', buffering=64 * 1024, encoding='utf-8', closefd=False)
    buffered = BufferedLogHandler(stream)
    logging.basicConfig(level=logging.INFO, format=FORMAT, handlers=[buffered])
    logging.getLogger('waitress.queue').setLevel(logging.ERROR)  # "queue depth" fires whenever all threads are busy


def write_access(line):
    if buffered is None:
        log.info(line)
    else:
        buffered.access(line)


class BufferedLogHandler(logging.StreamHandler):
    """Lines go to a buffered stream flushed every half second; access lines are written in FORMAT directly."""

    def __init__(self, stream, interval=0.5):
        super().__init__(stream)
        self.clock = None, ''  # (second, its timestamp): strftime once a second, not once a line
        threading.Thread(target=self._flush_every, args=(interval,), daemon=True).start()

    def access(self, message):
        now = time.time()
        second, stamp = self.clock
        if int(now) != second:
            stamp = time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(now))
            self.clock = int(now), stamp
        with self.lock:
            self.stream.write(f'{stamp},{int(now % 1 * 1000):03d} INFO moviesapi: {message}\n')

    def emit(self, record):
        try:
            self.stream.write(self.format(record) + self.terminator)
        except Exception:
            self.handleError(record)

    def _flush_every(self, interval):
        while True:
            time.sleep(interval)
            self.flush()
