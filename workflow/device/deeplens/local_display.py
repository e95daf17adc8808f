"""The project stream of an AWS DeepLens: a thread that writes JPEG frames into the FIFO the device's video
server reads (the Developer Guide's inference template ships a local_display.py with this role).

Python 2.7 and 3.7 (the device's Lambda runtimes); OpenCV and the standard library only.

    display = LocalDisplay('480p')
    display.start()
    display.set_frame_data(frame)   # each new BGR frame; the thread writes the latest one as a JPEG
"""

import os
import threading

import cv2

FIFO_PATH = "/tmp/results.mjpeg"  # where the DeepLens' video server reads the project stream
RESOLUTIONS = {"1080p": (1920, 1080), "720p": (1280, 720), "480p": (858, 480)}
POLL_SECONDS = 0.5


class LocalDisplay(threading.Thread):
    def __init__(self, resolution):
        super(LocalDisplay, self).__init__()
        if resolution not in RESOLUTIONS:
            raise ValueError("resolution must be one of {}".format(", ".join(sorted(RESOLUTIONS))))
        self.daemon = True  # opening a FIFO blocks until its reader opens it: never keep the Lambda from exiting
        self.resolution = RESOLUTIONS[resolution]
        self.frame = None
        self.new_frame = threading.Event()
        self.stop_request = threading.Event()
        self.frames_written = 0

    def run(self):
        if not os.path.exists(FIFO_PATH):
            os.mkfifo(FIFO_PATH)
        while not self.stop_request.is_set():
            with open(FIFO_PATH, "wb") as fifo:
                if not self._write_frames(fifo):
                    return

    def _write_frames(self, fifo):
        """Write each new frame; False once stopped (after the last frame), True when the reader went away."""
        while True:
            if self.new_frame.wait(POLL_SECONDS):
                self.new_frame.clear()
                try:
                    fifo.write(self.frame)
                    fifo.flush()
                    self.frames_written += 1
                except IOError:
                    return True
            elif self.stop_request.is_set():
                return False

    def set_frame_data(self, frame):
        ok, jpeg = cv2.imencode(".jpg", cv2.resize(frame, self.resolution))
        if not ok:
            raise IOError("could not encode the frame as JPEG")
        self.frame = jpeg.tobytes()
        self.new_frame.set()

    def join(self, timeout=None):
        """Stop after writing the last frame set."""
        self.stop_request.set()
        super(LocalDisplay, self).join(timeout)
