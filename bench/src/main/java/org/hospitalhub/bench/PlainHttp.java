package org.hospitalhub.bench;

import java.io.BufferedInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.function.BiConsumer;

/**
 * A lean HTTP/1.1 load client for the benchmarks: a fixed number of keep-alive connections, each driven by its own
 * thread with blocking writes and reads, taking POSTs from one queue. At a thousand requests a second the JDK's
 * HttpClient used about two thirds of one of the machine's two cores, which the hub and PostgreSQL under test then
 * lacked; this client does the same work for a fraction of that (bench/README.md, qc benchmark). It understands what
 * the hub answers (a status line, headers with Content-Length, a body), not HTTP in general.
 */
final class PlainHttp implements AutoCloseable {

    private record Job(byte[] request, BiConsumer<Integer, Throwable> done) {
    }

    private static final Job STOP = new Job(null, null);

    private final URI uri;
    private final String head;
    private final LinkedBlockingQueue<Job> jobs = new LinkedBlockingQueue<>();
    private final List<Thread> threads = new ArrayList<>();

    /** {@code connections} connections to {@code uri}'s host and port; every POST goes to its path with these headers. */
    PlainHttp(URI uri, int connections, String headers) {
        this.uri = uri;
        this.head = "POST " + uri.getRawPath() + " HTTP/1.1\r\nHost: " + uri.getHost() + ":" + uri.getPort() + "\r\n" + headers;
        for (int i = 0; i < connections; i++) {
            Thread t = new Thread(this::run, "plain-http-" + i);
            t.setDaemon(true);
            t.start();
            threads.add(t);
        }
    }

    /** Queues a POST; {@code done} gets the status code, or the failure, on a connection's thread. */
    void post(String body, BiConsumer<Integer, Throwable> done) {
        byte[] b = body.getBytes(StandardCharsets.UTF_8);
        byte[] h = (head + "Content-Length: " + b.length + "\r\n\r\n").getBytes(StandardCharsets.US_ASCII);
        byte[] request = new byte[h.length + b.length];
        System.arraycopy(h, 0, request, 0, h.length);
        System.arraycopy(b, 0, request, h.length, b.length);
        jobs.add(new Job(request, done));
    }

    private void run() {
        Socket s = null;
        InputStream in = null;
        OutputStream out = null;
        try {
            while (true) {
                Job job = jobs.take();
                if (job == STOP) {
                    break;
                }
                int status;
                try {
                    if (s == null) {
                        s = new Socket();
                        s.setTcpNoDelay(true);
                        s.connect(new InetSocketAddress(uri.getHost(), uri.getPort()), 10_000);
                        s.setSoTimeout(60_000);
                        in = new BufferedInputStream(s.getInputStream(), 8192);
                        out = s.getOutputStream();
                    }
                    out.write(job.request());
                    out.flush();
                    status = readResponse(in);
                } catch (IOException | RuntimeException e) {
                    close(s);
                    s = null;
                    job.done().accept(0, e);
                    continue;
                }
                job.done().accept(status, null);
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        } finally {
            close(s);
        }
    }

    /** Reads one response (status line, headers, a Content-Length body) and returns its status code. */
    private static int readResponse(InputStream in) throws IOException {
        String statusLine = line(in);
        if (!statusLine.startsWith("HTTP/1.1 ") || statusLine.length() < 12) {
            throw new IOException("not an HTTP/1.1 status line: " + statusLine);
        }
        int status = Integer.parseInt(statusLine.substring(9, 12));
        int length = 0;
        for (String h; !(h = line(in)).isEmpty();) {
            if (h.regionMatches(true, 0, "content-length:", 0, 15)) {
                length = Integer.parseInt(h.substring(15).trim());
            } else if (h.regionMatches(true, 0, "transfer-encoding:", 0, 18)) {
                throw new IOException("chunked responses are not read by this client: " + h);
            }
        }
        for (long skipped = 0; skipped < length;) {
            long n = in.skip(length - skipped);
            if (n <= 0) {
                if (in.read() < 0) {
                    throw new IOException("connection closed inside a response body");
                }
                n = 1;
            }
            skipped += n;
        }
        return status;
    }

    private static String line(InputStream in) throws IOException {
        StringBuilder b = new StringBuilder(64);
        for (int c; (c = in.read()) != '\n';) {
            if (c < 0) {
                throw new IOException("connection closed by the server");
            }
            if (c != '\r') {
                b.append((char) c);
            }
        }
        return b.toString();
    }

    private static void close(Socket s) {
        if (s != null) {
            try {
                s.close();
            } catch (IOException ignored) {
                // closing anyway
            }
        }
    }

    @Override
    public void close() {
        threads.forEach(t -> jobs.add(STOP));
        for (Thread t : threads) {
            try {
                t.join(5_000);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                return;
            }
        }
    }
}
