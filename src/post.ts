/** The action's post step: remove key material, also after a failed or cancelled main step. */
import * as core from '@actions/core';
import { State } from './constants';
import { removeKeyMaterial } from './secrets';

removeKeyMaterial(core.getState(State.keyDir) || undefined, core.warning);
