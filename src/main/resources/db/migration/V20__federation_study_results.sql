-- Results of federated study steps executed on this node's own clinical data, keyed by (project, step): what
-- StepExecutor.clean removes before a step is executed again. They never leave the node; only aggregates (or
-- de-identified rows, if the project allows) are sent back to the initiator.
CREATE TABLE study_cohort_member (
  project_id varchar(64) NOT NULL,
  step_id    varchar(64) NOT NULL,
  person_id  bigint      NOT NULL,
  index_date date        NOT NULL,
  PRIMARY KEY (project_id, step_id, person_id, index_date)
);

CREATE TABLE study_variable_value (
  project_id varchar(64)    NOT NULL,
  step_id    varchar(64)    NOT NULL,
  name       varchar(40)    NOT NULL,
  person_id  bigint         NOT NULL,
  index_date date           NOT NULL,
  num_value  numeric(20, 6) NULL,
  text_value varchar(100)   NULL,
  PRIMARY KEY (project_id, step_id, name, person_id, index_date)
);

CREATE TABLE study_step_output (
  project_id  varchar(64) NOT NULL,
  step_id     varchar(64) NOT NULL,
  kind        varchar(20) NOT NULL,
  result      text        NOT NULL,
  executed_at timestamp   NOT NULL,
  PRIMARY KEY (project_id, step_id)
);
