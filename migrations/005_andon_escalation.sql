-- 005_andon_escalation.sql
-- MS5.0 andon escalation: escalations, escalation history, escalation rules and
-- recipients, the escalation columns of andon_events, the functions
-- auto_escalate_andon_events() and get_escalation_recipients(text[]), and the
-- view public.v_andon_escalation_statistics.
--
-- Idempotent: safe on an empty database, on its own result, and on a
-- production database where these objects already exist (nothing is dropped,
-- no rows are changed; a function is only dropped and recreated when an older
-- version has different parameter names or defaults, which CREATE OR REPLACE
-- cannot change).

CREATE TABLE IF NOT EXISTS factory_telemetry.andon_escalations (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    event_id uuid NOT NULL,
    priority text NOT NULL,
    acknowledgment_timeout_minutes integer NOT NULL DEFAULT 15,
    resolution_timeout_minutes integer NOT NULL DEFAULT 60,
    escalation_recipients text[] NOT NULL DEFAULT '{}'::text[],
    escalation_level integer NOT NULL DEFAULT 1,
    status text NOT NULL DEFAULT 'active'::text,
    created_at timestamp with time zone DEFAULT now(),
    acknowledged_at timestamp with time zone,
    escalated_at timestamp with time zone,
    cancelled_at timestamp with time zone,
    resolved_at timestamp with time zone,
    escalation_notes text,
    escalated_by uuid,
    acknowledged_by uuid
);

CREATE TABLE IF NOT EXISTS factory_telemetry.andon_escalation_history (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    escalation_id uuid NOT NULL,
    action text NOT NULL,
    performed_by uuid,
    performed_at timestamp with time zone DEFAULT now(),
    notes text,
    escalation_level integer,
    recipients_notified text[],
    notification_method text
);

CREATE TABLE IF NOT EXISTS factory_telemetry.andon_escalation_rules (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    priority text NOT NULL,
    escalation_level integer NOT NULL,
    delay_minutes integer NOT NULL DEFAULT 0,
    recipients text[] NOT NULL DEFAULT '{}'::text[],
    notification_methods text[] NOT NULL DEFAULT '{email,websocket}'::text[],
    escalation_message_template text,
    enabled boolean DEFAULT true,
    created_at timestamp with time zone DEFAULT now(),
    updated_at timestamp with time zone DEFAULT now()
);

CREATE TABLE IF NOT EXISTS factory_telemetry.andon_escalation_recipients (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    role text NOT NULL,
    name text NOT NULL,
    email text,
    phone text,
    sms_enabled boolean DEFAULT false,
    email_enabled boolean DEFAULT true,
    websocket_enabled boolean DEFAULT true,
    push_enabled boolean DEFAULT false,
    escalation_levels integer[] DEFAULT '{1,2,3,4}'::integer[],
    enabled boolean DEFAULT true,
    created_at timestamp with time zone DEFAULT now(),
    updated_at timestamp with time zone DEFAULT now()
);

-- andon_events: escalation state
ALTER TABLE factory_telemetry.andon_events
    ADD COLUMN IF NOT EXISTS escalation_level integer DEFAULT 0,
    ADD COLUMN IF NOT EXISTS escalation_status text DEFAULT 'none'::text;

-- Keys and foreign keys, added only when missing. A constraint counts as present
-- when one with the same name (PostgreSQL's default name) or the same definition
-- is already on the table, or, for a primary key, when the table has any primary key.
DO $$
DECLARE
    c record;
BEGIN
    FOR c IN
        SELECT * FROM (VALUES
            ('factory_telemetry.andon_escalations',           'andon_escalations_pkey',                      'PRIMARY KEY (id)'),
            ('factory_telemetry.andon_escalation_history',    'andon_escalation_history_pkey',               'PRIMARY KEY (id)'),
            ('factory_telemetry.andon_escalation_rules',      'andon_escalation_rules_pkey',                 'PRIMARY KEY (id)'),
            ('factory_telemetry.andon_escalation_recipients', 'andon_escalation_recipients_pkey',            'PRIMARY KEY (id)'),
            ('factory_telemetry.andon_escalation_recipients', 'andon_escalation_recipients_role_key',        'UNIQUE (role)'),
            ('factory_telemetry.andon_escalations',           'andon_escalations_acknowledged_by_fkey',      'FOREIGN KEY (acknowledged_by) REFERENCES factory_telemetry.users(id)'),
            ('factory_telemetry.andon_escalations',           'andon_escalations_escalated_by_fkey',         'FOREIGN KEY (escalated_by) REFERENCES factory_telemetry.users(id)'),
            ('factory_telemetry.andon_escalations',           'andon_escalations_event_id_fkey',             'FOREIGN KEY (event_id) REFERENCES factory_telemetry.andon_events(id) ON DELETE CASCADE'),
            ('factory_telemetry.andon_escalation_history',    'andon_escalation_history_escalation_id_fkey', 'FOREIGN KEY (escalation_id) REFERENCES factory_telemetry.andon_escalations(id) ON DELETE CASCADE'),
            ('factory_telemetry.andon_escalation_history',    'andon_escalation_history_performed_by_fkey',  'FOREIGN KEY (performed_by) REFERENCES factory_telemetry.users(id)')
        ) AS v(tbl, conname, condef)
    LOOP
        IF NOT EXISTS (
            SELECT 1
            FROM pg_constraint pc
            WHERE pc.conrelid = c.tbl::regclass
              AND (pc.conname = c.conname
                   OR pg_get_constraintdef(pc.oid) = c.condef
                   OR (pc.contype = 'p' AND starts_with(c.condef, 'PRIMARY KEY')))
        ) THEN
            EXECUTE 'ALTER TABLE ' || c.tbl || ' ADD CONSTRAINT ' || quote_ident(c.conname) || ' ' || c.condef;
            RAISE NOTICE 'added constraint % on %', c.conname, c.tbl;
        END IF;
    END LOOP;
END
$$;

-- Indexes
CREATE INDEX IF NOT EXISTS idx_andon_escalations_event_id ON factory_telemetry.andon_escalations (event_id);
CREATE INDEX IF NOT EXISTS idx_andon_escalations_status ON factory_telemetry.andon_escalations (status);
CREATE INDEX IF NOT EXISTS idx_andon_escalations_priority ON factory_telemetry.andon_escalations (priority);
CREATE INDEX IF NOT EXISTS idx_andon_escalations_created_at ON factory_telemetry.andon_escalations (created_at);
CREATE INDEX IF NOT EXISTS idx_andon_escalation_history_escalation_id ON factory_telemetry.andon_escalation_history (escalation_id);
CREATE INDEX IF NOT EXISTS idx_andon_escalation_history_performed_at ON factory_telemetry.andon_escalation_history (performed_at);
CREATE INDEX IF NOT EXISTS idx_andon_escalation_rules_priority ON factory_telemetry.andon_escalation_rules (priority);
CREATE INDEX IF NOT EXISTS idx_andon_escalation_recipients_role ON factory_telemetry.andon_escalation_recipients (role);

-- Views
CREATE OR REPLACE VIEW public.v_andon_escalation_statistics AS
SELECT date(ae.created_at) AS date,
       ae.priority,
       count(*) AS total_escalations,
       count(*) FILTER (WHERE ae.status = 'resolved') AS resolved_escalations,
       count(*) FILTER (WHERE ae.status = 'escalated') AS escalated_escalations,
       count(*) FILTER (WHERE ae.status = 'active') AS active_escalations,
       avg(EXTRACT(epoch FROM ae.acknowledged_at - ae.created_at) / 60) AS avg_acknowledgment_time_minutes,
       avg(EXTRACT(epoch FROM ae.resolved_at - ae.created_at) / 60) AS avg_resolution_time_minutes,
       max(ae.escalation_level) AS max_escalation_level_reached
FROM factory_telemetry.andon_escalations ae
WHERE ae.created_at >= current_date - interval '30 days'
GROUP BY date(ae.created_at), ae.priority
ORDER BY date(ae.created_at) DESC, ae.priority;

-- Functions
-- CREATE OR REPLACE FUNCTION cannot rename parameters, remove defaults or
-- change the result type. If an existing function with one of these signatures
-- differs in those respects, it is dropped here and recreated below.
DO $$
DECLARE
    f record;
BEGIN
    FOR f IN
        SELECT * FROM (VALUES
            ('factory_telemetry.get_escalation_recipients(text[])',
             'recipient_roles text[]',
             'TABLE(role text, name text, email text, phone text, sms_enabled boolean, email_enabled boolean, websocket_enabled boolean, push_enabled boolean)')
        ) AS v(sig, args, result)
    LOOP
        IF to_regprocedure(f.sig) IS NOT NULL
           AND (pg_get_function_arguments(to_regprocedure(f.sig)) <> f.args
                OR pg_get_function_result(to_regprocedure(f.sig)) <> f.result) THEN
            EXECUTE 'DROP FUNCTION ' || f.sig;
            RAISE NOTICE 'dropped % (different parameters or result), recreating it', f.sig;
        END IF;
    END LOOP;
END
$$;

-- Raise the level of every active or acknowledged escalation whose
-- acknowledgment (or, once acknowledged, resolution) timeout has passed, using
-- the enabled rule for the next level; without such a rule the escalation is
-- marked 'escalated' at the next level. Every step is written to the history.
CREATE OR REPLACE FUNCTION factory_telemetry.auto_escalate_andon_events()
RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
    esc record;
    rule record;
    next_level integer;
BEGIN
    FOR esc IN
        SELECT e.id, e.priority, e.escalation_level, e.status
        FROM factory_telemetry.andon_escalations e
        WHERE e.status IN ('active', 'acknowledged')
          AND ((e.acknowledged_at IS NULL
                AND e.created_at < now() - make_interval(mins => e.acknowledgment_timeout_minutes))
            OR (e.acknowledged_at IS NOT NULL AND e.resolved_at IS NULL
                AND e.created_at < now() - make_interval(mins => e.resolution_timeout_minutes)))
        FOR UPDATE OF e
    LOOP
        next_level := esc.escalation_level + 1;

        SELECT r.recipients, r.notification_methods
          INTO rule
        FROM factory_telemetry.andon_escalation_rules r
        WHERE r.priority = esc.priority
          AND r.escalation_level = next_level
          AND r.enabled
        ORDER BY r.delay_minutes
        LIMIT 1;

        IF NOT FOUND THEN
            UPDATE factory_telemetry.andon_escalations
               SET status = 'escalated',
                   escalated_at = now(),
                   escalation_level = next_level
             WHERE id = esc.id;

            INSERT INTO factory_telemetry.andon_escalation_history
                   (escalation_id, action, performed_at, notes, escalation_level)
            VALUES (esc.id, 'escalated', now(), 'Maximum escalation level reached', next_level);
        ELSE
            UPDATE factory_telemetry.andon_escalations
               SET escalation_level = next_level,
                   escalation_recipients = rule.recipients,
                   escalated_at = now(),
                   status = CASE WHEN esc.status = 'active' THEN 'escalated' ELSE esc.status END
             WHERE id = esc.id;

            INSERT INTO factory_telemetry.andon_escalation_history
                   (escalation_id, action, performed_at, notes, escalation_level,
                    recipients_notified, notification_method)
            VALUES (esc.id, 'escalated', now(),
                    'Escalated to level ' || next_level || ' after timeout',
                    next_level, rule.recipients, rule.notification_methods[1]);
        END IF;
    END LOOP;
END;
$$;

-- Contact details of the enabled escalation recipients for the given roles.
CREATE OR REPLACE FUNCTION factory_telemetry.get_escalation_recipients(recipient_roles text[])
RETURNS TABLE(role text, name text, email text, phone text, sms_enabled boolean,
              email_enabled boolean, websocket_enabled boolean, push_enabled boolean)
LANGUAGE plpgsql
AS $$
BEGIN
    RETURN QUERY
    SELECT r.role, r.name, r.email, r.phone,
           r.sms_enabled, r.email_enabled, r.websocket_enabled, r.push_enabled
    FROM factory_telemetry.andon_escalation_recipients r
    WHERE r.role = ANY (recipient_roles)
      AND r.enabled = true;
END;
$$;
