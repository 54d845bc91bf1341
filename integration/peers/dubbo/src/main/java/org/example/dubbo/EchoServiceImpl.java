package org.example.dubbo;

import java.util.concurrent.CompletableFuture;
import java.util.concurrent.atomic.AtomicInteger;

/** One provider instance's implementation; {@code instance} tells the instances apart. */
public class EchoServiceImpl implements EchoService {
    private final String instance;
    private final AtomicInteger fired = new AtomicInteger();

    public EchoServiceImpl(String instance) {
        this.instance = instance;
    }

    @Override
    public String echo(String text) {
        return text;
    }

    @Override
    public CompletableFuture<String> echoAsync(String text) {
        return CompletableFuture.completedFuture(text);
    }

    @Override
    public String whoami() {
        return instance;
    }

    @Override
    public String mixed(int i, long l, double d, boolean b, java.util.Date date, byte[] bin,
            java.util.List<Object> list, java.util.Map<String, Object> map, Payload payload,
            String big, Object nothing) {
        return i + "," + l + "," + d + "," + b + "," + date.getTime() + "," + bin.length + ","
                + list.size() + "," + map.size() + "," + payload.name + "," + (payload.next == payload)
                + "," + big.length() + "," + (nothing == null);
    }

    @Override
    public String fail(String text) throws EchoException {
        throw new EchoException("fail(" + text + ") on " + instance);
    }

    @Override
    public String slow(long millis) {
        try {
            Thread.sleep(millis);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        return instance;
    }

    @Override
    public void fire(String text) {
        int n = fired.incrementAndGet();
        System.out.println("{\"event\":\"fired\",\"text\":" + Json.str(text) + ",\"count\":" + n + "}");
        System.out.flush();
    }

    @Override
    public int fired() {
        return fired.get();
    }
}
