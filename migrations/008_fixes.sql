-- 008_fixes.sql
-- MS5.0 fixes: users.updated_at, equipment_config.ideal_cycle_time, indexes on
-- the user and context columns and composite indexes for common queries, the
-- view public.v_production_line_status, and the short form of
-- update_equipment_production_context (9 arguments, returns boolean).
--
-- Idempotent: safe on an empty database, on its own result, and on a
-- production database where these objects already exist (nothing is dropped,
-- no rows are changed; a function is only dropped and recreated when an older
-- version has different parameter names or defaults, which CREATE OR REPLACE
-- cannot change). The replacement view and function that the original 008
-- tried for v_equipment_production_status and get_equipment_production_context
-- are not applied: they changed the columns that the dashboard reads, and the
-- 007 versions are the ones in production.

ALTER TABLE factory_telemetry.equipment_config
    ADD COLUMN IF NOT EXISTS ideal_cycle_time real DEFAULT 1.0;

ALTER TABLE factory_telemetry.users
    ADD COLUMN IF NOT EXISTS updated_at timestamp with time zone DEFAULT now();

-- Indexes
CREATE INDEX IF NOT EXISTS idx_users_employee_id ON factory_telemetry.users (employee_id);
CREATE INDEX IF NOT EXISTS idx_users_role ON factory_telemetry.users (role);
CREATE INDEX IF NOT EXISTS idx_users_department ON factory_telemetry.users (department);
CREATE INDEX IF NOT EXISTS idx_users_shift ON factory_telemetry.users (shift);
CREATE INDEX IF NOT EXISTS idx_users_is_active ON factory_telemetry.users (is_active);
CREATE INDEX IF NOT EXISTS idx_context_product_type ON factory_telemetry.context (current_product_type_id);
CREATE INDEX IF NOT EXISTS idx_production_schedules_line_status ON factory_telemetry.production_schedules (line_id, status);
CREATE INDEX IF NOT EXISTS idx_job_assignments_user_status ON factory_telemetry.job_assignments (user_id, status);
CREATE INDEX IF NOT EXISTS idx_downtime_events_equipment_time ON factory_telemetry.downtime_events (equipment_code, start_time);
CREATE INDEX IF NOT EXISTS idx_andon_events_line_status ON factory_telemetry.andon_events (line_id, status);
CREATE INDEX IF NOT EXISTS idx_oee_calculations_equipment_time ON factory_telemetry.oee_calculations (equipment_code, calculation_time);

-- Views
CREATE OR REPLACE VIEW public.v_production_line_status AS
SELECT pl.id AS line_id,
       pl.line_code,
       pl.name AS line_name,
       pl.target_speed,
       pl.enabled,
       count(ec.equipment_code) AS total_equipment,
       count(ec.equipment_code) FILTER (WHERE ec.enabled = true) AS active_equipment,
       count(c.equipment_code) FILTER (WHERE c.planned_stop = false) AS running_equipment,
       count(c.equipment_code) FILTER (WHERE c.planned_stop = true) AS stopped_equipment,
       count(ps.id) AS active_schedules,
       count(ja.id) AS active_jobs,
       count(ja.id) FILTER (WHERE ja.status = 'in_progress') AS running_jobs
FROM factory_telemetry.production_lines pl
LEFT JOIN factory_telemetry.equipment_config ec ON ec.production_line_id = pl.id
LEFT JOIN factory_telemetry.context c ON c.equipment_code = ec.equipment_code
LEFT JOIN factory_telemetry.production_schedules ps
       ON ps.line_id = pl.id AND ps.status = 'in_progress'
LEFT JOIN factory_telemetry.job_assignments ja
       ON ja.schedule_id = ps.id AND ja.status IN ('assigned', 'accepted', 'in_progress')
WHERE pl.enabled = true
GROUP BY pl.id, pl.line_code, pl.name, pl.target_speed, pl.enabled
ORDER BY pl.line_code;

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
            ('factory_telemetry.update_equipment_production_context(text,uuid,uuid,uuid,real,text,text,boolean,text)',
             'equipment_code_param text, line_id_param uuid DEFAULT NULL::uuid, current_job_id_param uuid DEFAULT NULL::uuid, production_schedule_id_param uuid DEFAULT NULL::uuid, target_speed_param real DEFAULT NULL::real, current_operator_param text DEFAULT NULL::text, current_shift_param text DEFAULT NULL::text, planned_stop_param boolean DEFAULT NULL::boolean, planned_stop_reason_param text DEFAULT NULL::text',
             'boolean')
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

-- Short form used by the API: updates an existing context row (arguments left
-- NULL keep the current value). Returns false when the equipment has no context row.
CREATE OR REPLACE FUNCTION factory_telemetry.update_equipment_production_context(
    equipment_code_param text,
    line_id_param uuid DEFAULT NULL,
    current_job_id_param uuid DEFAULT NULL,
    production_schedule_id_param uuid DEFAULT NULL,
    target_speed_param real DEFAULT NULL,
    current_operator_param text DEFAULT NULL,
    current_shift_param text DEFAULT NULL,
    planned_stop_param boolean DEFAULT NULL,
    planned_stop_reason_param text DEFAULT NULL
)
RETURNS boolean
LANGUAGE plpgsql
AS $$
BEGIN
    UPDATE factory_telemetry.context c
       SET production_line_id     = COALESCE(line_id_param, c.production_line_id),
           current_job_id         = COALESCE(current_job_id_param, c.current_job_id),
           production_schedule_id = COALESCE(production_schedule_id_param, c.production_schedule_id),
           target_speed           = COALESCE(target_speed_param, c.target_speed),
           current_operator       = COALESCE(current_operator_param, c.current_operator),
           current_shift          = COALESCE(current_shift_param, c.current_shift),
           planned_stop           = COALESCE(planned_stop_param, c.planned_stop),
           planned_stop_reason    = COALESCE(planned_stop_reason_param, c.planned_stop_reason),
           updated_at             = now()
     WHERE c.equipment_code = equipment_code_param;
    RETURN FOUND;
END;
$$;
