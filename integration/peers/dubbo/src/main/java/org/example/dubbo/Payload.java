package org.example.dubbo;

import java.io.Serializable;
import java.util.List;

/** A class instance argument (Hessian2 class definition, fields, a back reference). */
public class Payload implements Serializable {
    private static final long serialVersionUID = 1L;

    public String name;
    public int count;
    public List<String> tags;
    /** Another payload, or this one (a Hessian2 reference). */
    public Payload next;

    public Payload() {}

    public Payload(String name, int count, List<String> tags) {
        this.name = name;
        this.count = count;
        this.tags = tags;
    }
}
