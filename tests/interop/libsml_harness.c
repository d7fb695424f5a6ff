/*
 * libsml interop harness for imsys (tests/interop/test_sml_libsml.py, bench/sml.py).
 *
 *   libsml_harness parse FILE      split FILE into SML transport-v1 frames, check each frame's
 *                                  CRC with libsml's sml_crc16_calculate, parse the SML file with
 *                                  sml_file_parse and print a canonical dump (one line per field)
 *   libsml_harness bench FILE N    parse the frames of FILE N times; print "frames_per_s <x>"
 *   libsml_harness write           build a file with libsml's own encoder (OpenResponse,
 *                                  GetListResponse, CloseResponse) and write it to stdout with
 *                                  sml_transport_write
 *
 * Build: gcc -O2 -o libsml_harness libsml_harness.c -lsml -luuid -lm
 * The dump format is mirrored by _dump() in test_sml_libsml.py; keep both in step.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sml/sml_crc16.h>
#include <sml/sml_file.h>
#include <sml/sml_transport.h>
#include <sml/sml_value.h>

static const unsigned char ESC[4] = {0x1b, 0x1b, 0x1b, 0x1b};
static const unsigned char START[8] = {0x1b, 0x1b, 0x1b, 0x1b, 0x01, 0x01, 0x01, 0x01};

static void p_octets(const char *name, octet_string *s) {
    printf("%s=", name);
    if (!s) { printf("-\n"); return; }
    for (int i = 0; i < s->len; i++) printf("%02x", s->str[i]);
    printf("\n");
}

static void p_octets_inline(octet_string *s) {
    if (!s) { printf("-"); return; }
    for (int i = 0; i < s->len; i++) printf("%02x", s->str[i]);
}

static void p_u8(const char *name, u8 *v) {
    if (v) printf("%s=%u\n", name, *v); else printf("%s=-\n", name);
}
static void p_i8(const char *name, i8 *v) {
    if (v) printf("%s=%d\n", name, *v); else printf("%s=-\n", name);
}
static void p_u32(const char *name, u32 *v) {
    if (v) printf("%s=%" PRIu32 "\n", name, *v); else printf("%s=-\n", name);
}
static void p_u64(const char *name, u64 *v) {
    if (v) printf("%s=%" PRIu64 "\n", name, *v); else printf("%s=-\n", name);
}
static void p_i64(const char *name, i64 *v) {
    if (v) printf("%s=%" PRId64 "\n", name, *v); else printf("%s=-\n", name);
}

static void p_time_inline(sml_time *t) {
    if (!t) { printf("-"); return; }
    if (*t->tag == SML_TIME_SEC_INDEX) printf("sec:%" PRIu32, *t->data.sec_index);
    else if (*t->tag == SML_TIME_TIMESTAMP) printf("ts:%" PRIu32, *t->data.timestamp);
    else printf("?%u", *t->tag);
}
static void p_time(const char *name, sml_time *t) {
    printf("%s=", name); p_time_inline(t); printf("\n");
}

static void p_value_inline(sml_value *v) {
    if (!v) { printf("-"); return; }
    switch (v->type & SML_TYPE_FIELD) {
    case SML_TYPE_OCTET_STRING: printf("o:"); p_octets_inline(v->data.bytes); return;
    case SML_TYPE_BOOLEAN: printf("b:%d", *v->data.boolean ? 1 : 0); return;
    case SML_TYPE_INTEGER:
        switch (v->type & SML_LENGTH_FIELD) {
        case 1: printf("n:%d", *v->data.int8); return;
        case 2: printf("n:%d", *v->data.int16); return;
        case 4: printf("n:%" PRId32, *v->data.int32); return;
        case 8: printf("n:%" PRId64, *v->data.int64); return;
        }
        break;
    case SML_TYPE_UNSIGNED:
        switch (v->type & SML_LENGTH_FIELD) {
        case 1: printf("n:%u", *v->data.uint8); return;
        case 2: printf("n:%u", *v->data.uint16); return;
        case 4: printf("n:%" PRIu32, *v->data.uint32); return;
        case 8: printf("n:%" PRIu64, *v->data.uint64); return;
        }
        break;
    }
    printf("?type%02x", v->type);
}
static void p_value(const char *name, sml_value *v) {
    printf("%s=", name); p_value_inline(v); printf("\n");
}

static void p_status(const char *name, sml_status *s) {
    printf("%s=", name);
    if (!s) { printf("-\n"); return; }
    switch (s->type & SML_LENGTH_FIELD) {
    case 1: printf("%u\n", *s->data.status8); return;
    case 2: printf("%u\n", *s->data.status16); return;
    case 4: printf("%" PRIu32 "\n", *s->data.status32); return;
    case 8: printf("%" PRIu64 "\n", *s->data.status64); return;
    }
    printf("?\n");
}

static void p_path(const char *name, sml_tree_path *p) {
    printf("%s=", name);
    if (!p) { printf("-\n"); return; }
    printf("[");
    for (int i = 0; i < p->path_entries_len; i++) {
        if (i) printf(",");
        p_octets_inline(p->path_entries[i]);
    }
    printf("]\n");
}

static void p_period_entry(sml_period_entry *e) {
    printf("period_entry\n");
    p_octets("obj_name", e->obj_name);
    p_u8("unit", e->unit);
    p_i8("scaler", e->scaler);
    p_value("value", e->value);
    p_octets("value_signature", e->value_signature);
}

static void p_tree(sml_tree *t, int depth) {
    printf("tree depth=%d\n", depth);
    p_octets("parameter_name", t->parameter_name);
    sml_proc_par_value *v = t->parameter_value;
    if (!v) printf("parameter_value=-\n");
    else {
        printf("parameter_value kind=%u\n", *v->tag);
        switch (*v->tag) {
        case SML_PROC_PAR_VALUE_TAG_VALUE: p_value("value", v->data.value); break;
        case SML_PROC_PAR_VALUE_TAG_PERIOD_ENTRY: p_period_entry(v->data.period_entry); break;
        case SML_PROC_PAR_VALUE_TAG_TIME: p_time("time", v->data.time); break;
        case SML_PROC_PAR_VALUE_TAG_TUPEL_ENTRY: {
            sml_tupel_entry *e = v->data.tupel_entry;
            p_octets("server_id", e->server_id);
            p_time("sec_index", e->sec_index);
            p_u64("status", e->status);
            p_u8("unit_pA", e->unit_pA); p_i8("scaler_pA", e->scaler_pA); p_i64("value_pA", e->value_pA);
            p_u8("unit_R1", e->unit_R1); p_i8("scaler_R1", e->scaler_R1); p_i64("value_R1", e->value_R1);
            p_u8("unit_R4", e->unit_R4); p_i8("scaler_R4", e->scaler_R4); p_i64("value_R4", e->value_R4);
            p_octets("signature_pA_R1_R4", e->signature_pA_R1_R4);
            p_u8("unit_mA", e->unit_mA); p_i8("scaler_mA", e->scaler_mA); p_i64("value_mA", e->value_mA);
            p_u8("unit_R2", e->unit_R2); p_i8("scaler_R2", e->scaler_R2); p_i64("value_R2", e->value_R2);
            p_u8("unit_R3", e->unit_R3); p_i8("scaler_R3", e->scaler_R3); p_i64("value_R3", e->value_R3);
            p_octets("signature_mA_R2_R3", e->signature_mA_R2_R3);
            break;
        }
        default: printf("?\n");
        }
    }
    if (!t->child_list) printf("children=-\n");
    else {
        printf("children=%d\n", t->child_list_len);
        for (int i = 0; i < t->child_list_len; i++) p_tree(t->child_list[i], depth + 1);
    }
}

static void p_tree_opt(const char *name, sml_tree *t) {
    if (!t) { printf("%s=-\n", name); return; }
    printf("%s=tree\n", name);
    p_tree(t, 0);
}

static void p_profile_request(sml_get_profile_pack_request *r) {
    p_octets("server_id", r->server_id);
    p_octets("username", r->username);
    p_octets("password", r->password);
    if (r->with_rawdata) printf("with_rawdata=%d\n", *r->with_rawdata ? 1 : 0);
    else printf("with_rawdata=-\n");
    p_time("begin_time", r->begin_time);
    p_time("end_time", r->end_time);
    p_path("parameter_tree_path", r->parameter_tree_path);
    if (!r->object_list) printf("object_list=-\n");
    else {
        printf("object_list=[");
        int first = 1;
        for (sml_obj_req_entry_list *e = r->object_list; e; e = e->next) {
            if (!first) printf(",");
            first = 0;
            p_octets_inline(e->object_list_entry);
        }
        printf("]\n");
    }
    p_tree_opt("das_details", r->das_details);
}

static void dump_message(sml_message *m) {
    printf("MSG tx=");
    p_octets_inline(m->transaction_id);
    printf(" group=%u abort=%u tag=%04x\n", m->group_id ? *m->group_id : 0,
           m->abort_on_error ? *m->abort_on_error : 0, *m->message_body->tag);
    void *d = m->message_body->data;
    switch (*m->message_body->tag) {
    case SML_MESSAGE_OPEN_REQUEST: {
        sml_open_request *r = d;
        p_octets("codepage", r->codepage); p_octets("client_id", r->client_id);
        p_octets("req_file_id", r->req_file_id); p_octets("server_id", r->server_id);
        p_octets("username", r->username); p_octets("password", r->password);
        p_u8("sml_version", r->sml_version);
        break;
    }
    case SML_MESSAGE_OPEN_RESPONSE: {
        sml_open_response *r = d;
        p_octets("codepage", r->codepage); p_octets("client_id", r->client_id);
        p_octets("req_file_id", r->req_file_id); p_octets("server_id", r->server_id);
        p_time("ref_time", r->ref_time); p_u8("sml_version", r->sml_version);
        break;
    }
    case SML_MESSAGE_CLOSE_REQUEST:
    case SML_MESSAGE_CLOSE_RESPONSE: {
        sml_close_request *r = d;
        p_octets("global_signature", r->global_signature);
        break;
    }
    case SML_MESSAGE_GET_PROFILE_PACK_REQUEST:
    case SML_MESSAGE_GET_PROFILE_LIST_REQUEST:
        p_profile_request(d);
        break;
    case SML_MESSAGE_GET_PROFILE_PACK_RESPONSE: {
        sml_get_profile_pack_response *r = d;
        p_octets("server_id", r->server_id); p_time("act_time", r->act_time);
        p_u32("reg_period", r->reg_period); p_path("parameter_tree_path", r->parameter_tree_path);
        printf("header_list=%d\n", r->header_list ? r->header_list->elems_len : 0);
        for (int i = 0; r->header_list && i < r->header_list->elems_len; i++) {
            sml_prof_obj_header_entry *h = r->header_list->elems[i];
            p_octets("obj_name", h->obj_name); p_u8("unit", h->unit); p_i8("scaler", h->scaler);
        }
        printf("period_list=%d\n", r->period_list ? r->period_list->elems_len : 0);
        for (int i = 0; r->period_list && i < r->period_list->elems_len; i++) {
            sml_prof_obj_period_entry *p = r->period_list->elems[i];
            p_time("val_time", p->val_time); p_u64("status", p->status);
            printf("values=%d\n", p->value_list ? p->value_list->elems_len : 0);
            for (int k = 0; p->value_list && k < p->value_list->elems_len; k++) {
                sml_value_entry *v = p->value_list->elems[k];
                p_value("value", v->value); p_octets("value_signature", v->value_signature);
            }
            p_octets("period_signature", p->period_signature);
        }
        p_octets("rawdata", r->rawdata); p_octets("profile_signature", r->profile_signature);
        break;
    }
    case SML_MESSAGE_GET_PROFILE_LIST_RESPONSE: {
        sml_get_profile_list_response *r = d;
        p_octets("server_id", r->server_id); p_time("act_time", r->act_time);
        p_u32("reg_period", r->reg_period); p_path("parameter_tree_path", r->parameter_tree_path);
        p_time("val_time", r->val_time); p_u64("status", r->status);
        printf("period_list=%d\n", r->period_list ? r->period_list->elems_len : 0);
        for (int i = 0; r->period_list && i < r->period_list->elems_len; i++)
            p_period_entry(r->period_list->elems[i]);
        p_octets("rawdata", r->rawdata); p_octets("period_signature", r->period_signature);
        break;
    }
    case SML_MESSAGE_GET_PROC_PARAMETER_REQUEST: {
        sml_get_proc_parameter_request *r = d;
        p_octets("server_id", r->server_id); p_octets("username", r->username);
        p_octets("password", r->password); p_path("parameter_tree_path", r->parameter_tree_path);
        p_octets("attribute", r->attribute);
        break;
    }
    case SML_MESSAGE_GET_PROC_PARAMETER_RESPONSE: {
        sml_get_proc_parameter_response *r = d;
        p_octets("server_id", r->server_id); p_path("parameter_tree_path", r->parameter_tree_path);
        p_tree_opt("parameter_tree", r->parameter_tree);
        break;
    }
    case SML_MESSAGE_SET_PROC_PARAMETER_REQUEST: {
        sml_set_proc_parameter_request *r = d;
        p_octets("server_id", r->server_id); p_octets("username", r->username);
        p_octets("password", r->password); p_path("parameter_tree_path", r->parameter_tree_path);
        p_tree_opt("parameter_tree", r->parameter_tree);
        break;
    }
    case SML_MESSAGE_GET_LIST_REQUEST: {
        sml_get_list_request *r = d;
        p_octets("client_id", r->client_id); p_octets("server_id", r->server_id);
        p_octets("username", r->username); p_octets("password", r->password);
        p_octets("list_name", r->list_name);
        break;
    }
    case SML_MESSAGE_GET_LIST_RESPONSE: {
        sml_get_list_response *r = d;
        p_octets("client_id", r->client_id); p_octets("server_id", r->server_id);
        p_octets("list_name", r->list_name); p_time("act_sensor_time", r->act_sensor_time);
        int n = 0;
        for (sml_list *e = r->val_list; e; e = e->next) n++;
        printf("val_list=%d\n", n);
        for (sml_list *e = r->val_list; e; e = e->next) {
            p_octets("obj_name", e->obj_name); p_status("status", e->status);
            p_time("val_time", e->val_time); p_u8("unit", e->unit); p_i8("scaler", e->scaler);
            p_value("value", e->value); p_octets("value_signature", e->value_signature);
        }
        p_octets("list_signature", r->list_signature);
        p_time("act_gateway_time", r->act_gateway_time);
        break;
    }
    case SML_MESSAGE_ATTENTION_RESPONSE: {
        sml_attention_response *r = d;
        p_octets("server_id", r->server_id); p_octets("attention_number", r->attention_number);
        p_octets("attention_message", r->attention_message);
        p_tree_opt("attention_details", r->attention_details);
        break;
    }
    default:
        printf("?unknown body\n");
    }
}

/* Find the next frame in data[pos..len): on success set *start/*end (exclusive) and return 1. */
static int next_frame(const unsigned char *data, size_t len, size_t pos, size_t *start,
                      size_t *end) {
    for (size_t s = pos; s + 8 <= len; s++) {
        if (memcmp(data + s, START, 8) != 0) continue;
        for (size_t k = s + 8; k + 8 <= len; k += 4) {
            if (memcmp(data + k, ESC, 4) != 0) continue;
            if (data[k + 4] == 0x1a) { *start = s; *end = k + 8; return 1; }
            if (memcmp(data + k + 4, ESC, 4) == 0) { k += 4; continue; }
            break; /* unknown escape: look for the next start */
        }
    }
    return 0;
}

/* Unescape the payload of frame data[s..e) into out; return its length (fill bytes kept). */
static size_t payload(const unsigned char *data, size_t s, size_t e, unsigned char *out) {
    size_t n = 0;
    for (size_t k = s + 8; k < e - 8; k += 4) {
        memcpy(out + n, data + k, 4);
        n += 4;
        if (memcmp(data + k, ESC, 4) == 0) k += 4;
    }
    return n;
}

static unsigned char *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) { perror(path); exit(2); }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc(n > 0 ? n : 1);
    if (n > 0 && fread(buf, 1, n, f) != (size_t)n) { perror("read"); exit(2); }
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static int cmd_parse(const char *path) {
    size_t len, pos = 0, s, e;
    unsigned char *data = read_all(path, &len);
    unsigned char *out = malloc(len + 1);
    while (next_frame(data, len, pos, &s, &e)) {
        u16 crc = sml_crc16_calculate(data + s, (int)(e - s - 2));
        u16 got = (u16)(data[e - 2] << 8 | data[e - 1]);
        printf("FRAME crc=%s\n", crc == got ? "ok" : "bad");
        size_t n = payload(data, s, e, out);
        sml_file *file = sml_file_parse(out, n);
        printf("messages=%d errors=%d\n", file->messages_len, sml_buf_has_errors(file->buf));
        for (int i = 0; i < file->messages_len; i++) dump_message(file->messages[i]);
        sml_file_free(file);
        pos = e;
    }
    free(out);
    free(data);
    return 0;
}

static int cmd_bench(const char *path, long rounds) {
    size_t len, pos = 0, s, e;
    unsigned char *data = read_all(path, &len);
    unsigned char *out = malloc(len + 1);
    struct timespec t0, t1;
    long frames = 0, values = 0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (long r = 0; r < rounds; r++) {
        pos = 0;
        while (next_frame(data, len, pos, &s, &e)) {
            u16 crc = sml_crc16_calculate(data + s, (int)(e - s - 2));
            if (crc != (u16)(data[e - 2] << 8 | data[e - 1])) { fprintf(stderr, "crc\n"); return 1; }
            size_t n = payload(data, s, e, out);
            sml_file *file = sml_file_parse(out, n);
            for (int i = 0; i < file->messages_len; i++) {
                sml_message *m = file->messages[i];
                if (*m->message_body->tag == SML_MESSAGE_GET_LIST_RESPONSE) {
                    sml_get_list_response *gl = m->message_body->data;
                    for (sml_list *l = gl->val_list; l; l = l->next) values++;
                }
            }
            sml_file_free(file);
            frames++;
            pos = e;
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double dt = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
    printf("frames_per_s %.1f\nvalues_per_s %.1f\n", frames / dt, values / dt);
    free(out);
    free(data);
    return 0;
}

static octet_string *os(const char *s) {
    return sml_octet_string_init((unsigned char *)s, (int)strlen(s));
}

static int cmd_write(void) {
    sml_file *file = sml_file_init();

    sml_message *m1 = sml_message_init();
    sml_open_response *open = sml_open_response_init();
    open->req_file_id = os("file01");
    open->server_id = os("meter-1");
    m1->message_body = sml_message_body_init(SML_MESSAGE_OPEN_RESPONSE, open);
    sml_file_add_message(file, m1);

    sml_message *m2 = sml_message_init();
    sml_get_list_response *gl = sml_get_list_response_init();
    gl->server_id = os("meter-1");
    sml_list *entry = sml_list_init();
    entry->obj_name = sml_octet_string_init((unsigned char *)"\x01\x00\x01\x08\x00\xff", 6);
    entry->unit = malloc(sizeof(u8));
    *entry->unit = 30;
    entry->scaler = malloc(sizeof(i8));
    *entry->scaler = -1;
    entry->value = sml_value_init();
    entry->value->type = SML_TYPE_UNSIGNED | SML_TYPE_NUMBER_32;
    entry->value->data.uint32 = malloc(sizeof(u32));
    *entry->value->data.uint32 = 123456789;
    sml_list *power = sml_list_init();
    power->obj_name = sml_octet_string_init((unsigned char *)"\x01\x00\x10\x07\x00\xff", 6);
    power->unit = malloc(sizeof(u8));
    *power->unit = 27;
    power->scaler = malloc(sizeof(i8));
    *power->scaler = 0;
    power->value = sml_value_init();
    power->value->type = SML_TYPE_INTEGER | SML_TYPE_NUMBER_16;
    power->value->data.int16 = malloc(sizeof(i16));
    *power->value->data.int16 = -1234;
    entry->next = power;
    gl->val_list = entry;
    m2->message_body = sml_message_body_init(SML_MESSAGE_GET_LIST_RESPONSE, gl);
    sml_file_add_message(file, m2);

    sml_message *m3 = sml_message_init();
    sml_close_response *close = sml_close_response_init();
    m3->message_body = sml_message_body_init(SML_MESSAGE_CLOSE_RESPONSE, close);
    sml_file_add_message(file, m3);

    int written = sml_transport_write(STDOUT_FILENO, file);
    return written > 0 ? 0 : 1;
}

int main(int argc, char **argv) {
    if (argc >= 3 && strcmp(argv[1], "parse") == 0) return cmd_parse(argv[2]);
    if (argc >= 4 && strcmp(argv[1], "bench") == 0) return cmd_bench(argv[2], atol(argv[3]));
    if (argc >= 2 && strcmp(argv[1], "write") == 0) return cmd_write();
    fprintf(stderr, "usage: %s parse FILE | bench FILE ROUNDS | write\n", argv[0]);
    return 2;
}
