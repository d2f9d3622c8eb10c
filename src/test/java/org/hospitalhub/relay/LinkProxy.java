package org.hospitalhub.relay;

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;

/**
 * A TCP forwarder on 127.0.0.1 between a child and its parent, to cut a link as a firewall would: {@link #blackhole}
 * stops moving bytes (connections stay open, new ones are accepted and hang, like packets silently dropped),
 * {@link #holdReplies} forwards what the child sends but holds what the parent answers (a request that arrives and
 * whose acknowledgement is lost); {@link #restore} closes what was held and forwards again; {@link #retarget} moves
 * it to another server.
 */
final class LinkProxy implements AutoCloseable {

    private final ServerSocket server;
    private volatile int targetPort;
    private final List<Socket> open = new CopyOnWriteArrayList<>();
    private volatile boolean blackhole;
    private volatile boolean holdReplies;
    private volatile boolean closed;

    LinkProxy(int targetPort) throws IOException {
        this.targetPort = targetPort;
        this.server = new ServerSocket(0, 50, InetAddress.getLoopbackAddress());
        Thread t = new Thread(this::accept, "link-proxy-" + server.getLocalPort());
        t.setDaemon(true);
        t.start();
    }

    int port() {
        return server.getLocalPort();
    }

    void blackhole() {
        blackhole = true;
    }

    /**
     * Sends new connections to another port and cuts the open ones, as a Kubernetes Service does when the pod behind
     * it is gone and another replica is ready.
     */
    void retarget(int port) {
        targetPort = port;
        restore();
    }

    void holdReplies() {
        holdReplies = true;
    }

    void restore() {
        open.forEach(s -> { // first, so that nothing held slips through as the flags clear
            try {
                s.close();
            } catch (IOException ignored) {
                // cut
            }
        });
        open.clear();
        blackhole = false;
        holdReplies = false;
    }

    private void accept() {
        while (!closed) {
            try {
                Socket in = server.accept();
                open.add(in);
                if (blackhole) {
                    continue; // held open, never answered
                }
                Socket out;
                try {
                    out = new Socket(InetAddress.getLoopbackAddress(), targetPort);
                } catch (IOException refused) { // nothing listens there: refused, as a connection to it would be
                    in.close();
                    open.remove(in);
                    continue;
                }
                open.add(out);
                pipe(in, out, false);
                pipe(out, in, true);
            } catch (IOException e) {
                if (closed) {
                    return;
                }
            }
        }
    }

    private void pipe(Socket from, Socket to, boolean reply) {
        Thread t = new Thread(() -> {
            byte[] buf = new byte[16384];
            try (InputStream in = from.getInputStream(); OutputStream out = to.getOutputStream()) {
                int n;
                while ((n = in.read(buf)) >= 0) {
                    while (blackhole || reply && holdReplies) { // bytes in flight are held, not delivered
                        Thread.sleep(20);
                        if (from.isClosed()) {
                            return;
                        }
                    }
                    out.write(buf, 0, n);
                    out.flush();
                }
            } catch (IOException | InterruptedException e) {
                // link cut
            } finally {
                try {
                    from.close();
                    to.close();
                } catch (IOException ignored) {
                    // closed
                }
            }
        }, "link-proxy-pipe");
        t.setDaemon(true);
        t.start();
    }

    @Override
    public void close() throws IOException {
        closed = true;
        server.close();
        restore();
    }
}
